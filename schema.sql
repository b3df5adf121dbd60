-- schema-version: 3
--
-- Pivotal: the whole PostgreSQL data model (PostgreSQL 15 and 16).
--
-- The daemon applies this file on every start, inside one transaction, as one multi-statement
-- simple-protocol query. Therefore everything here is idempotent:
--   * CREATE TABLE / INDEX ... IF NOT EXISTS; types and domains inside DO blocks guarded by pg_type;
--   * seed rows are inserted only when missing (and never consume identity values when present);
--   * nothing is ever dropped or altered. Changes to existing objects belong to a later,
--     versioned migration, never to an edit of a statement below.
-- No extensions: the embedded server may ship without contrib.
--
-- Conventions
--   * Tables are plural snake_case; indexes are named <table>_<columns>_idx (unique ones too).
--   * Ids are bigint identities unless a natural key is better (roles.name, composite members).
--   * Every table has created_at (row insert time). Event tables also carry the time the event
--     happened (at / occurred_at / recorded_at), because events are written in batches or
--     imported after the fact. Mutable rows have updated_at, set by the application (no
--     triggers: the file must stay cheap and lock-light to re-apply).
--   * CRM entities are soft-deleted (deleted_at). Their uniqueness rules are partial indexes
--     "WHERE deleted_at IS NULL" so a name or domain can be reused after deletion.
--   * History (attempts, events, dispositions, leads, ledgers, consents) references contacts and
--     campaigns with ON DELETE RESTRICT: that evidence must outlive edits. GDPR erasure
--     anonymises the contact row rather than deleting it. Pure membership rows cascade.
--   * State machines and kinds that the code mirrors are enums. Free-form vocabularies owned by
--     a third party (carrier hangup causes, webhook event names) are text with a format CHECK, so
--     an unknown upstream value is still stored and never loses an event.
--   * Secrets (API keys, SIP passwords, provider credentials) are stored encrypted by the
--     application as bytea; the database never sees plaintext.

-- Re-applying prints one "already exists, skipping" notice per object; keep the log quiet.
-- LOCAL: reverts when the loader's transaction ends.
SET LOCAL client_min_messages = warning;

-- =============================================================================================
-- Types: domains for normalised values
-- =============================================================================================

-- E.164 with leading '+', 6 to 15 digits.
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'e164_phone') THEN
  CREATE DOMAIN e164_phone AS text CHECK (VALUE ~ '^\+[1-9][0-9]{5,14}$');
END IF; END $$;

-- Normalised e-mail address: trimmed, domain part lower-cased (local part kept as written, since
-- RFC 5321 lets servers treat it as case-sensitive). Identity and look-ups use lower(email).
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'email_address') THEN
  CREATE DOMAIN email_address AS text
    CHECK (length(VALUE) <= 254 AND VALUE ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'
           AND split_part(VALUE, '@', 2) = lower(split_part(VALUE, '@', 2)));
END IF; END $$;

-- Normalised DNS name: lower case, no scheme, no "www.", no trailing dot (IDNs as punycode).
-- Two or more labels of [a-z0-9-], none starting or ending with a hyphen, none over 63 characters, a
-- top-level label of two or more. Written as three simple patterns: the one-regex form with counted
-- repetition costs PostgreSQL ~10 us a value (a tenth of an account import), these ~1.5 us.
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'dns_domain') THEN
  CREATE DOMAIN dns_domain AS text
    CONSTRAINT dns_domain_shape CHECK (
      length(VALUE) <= 253 AND VALUE ~ '^[a-z0-9-]+(\.[a-z0-9-]+)+$'
      AND VALUE !~ '(^|\.)-|-(\.|$)|[^.]{64}' AND VALUE ~ '[a-z0-9-]{2}$');
END IF; END $$;

-- ISO 3166-1 alpha-2 country code.
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'iso_country') THEN
  CREATE DOMAIN iso_country AS text CHECK (VALUE ~ '^[A-Z]{2}$');
END IF; END $$;

-- IANA zone name ("Europe/London", "UTC"). Only the shape is checked here; the application
-- validates against zoneinfo (a CHECK cannot consult pg_timezone_names).
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'iana_timezone') THEN
  CREATE DOMAIN iana_timezone AS text CHECK (VALUE ~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$');
END IF; END $$;

-- =============================================================================================
-- Types: enums (the code mirrors these value lists exactly)
-- =============================================================================================

-- CRM and provenance
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'client_organisation_status') THEN
  CREATE TYPE client_organisation_status AS ENUM ('active', 'suspended'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'record_source_kind') THEN
  CREATE TYPE record_source_kind AS ENUM ('import', 'api', 'manual', 'agent', 'system'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'import_entity') THEN
  CREATE TYPE import_entity AS ENUM ('accounts', 'contacts', 'suppressions'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'import_status') THEN
  CREATE TYPE import_status AS ENUM ('pending', 'running', 'completed', 'failed', 'cancelled'); END IF; END $$;
-- Mirrors python-phonenumbers' PhoneNumberType, lower-cased.
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'phone_line_type') THEN
  CREATE TYPE phone_line_type AS ENUM ('unknown', 'fixed_line', 'mobile', 'fixed_line_or_mobile',
    'toll_free', 'premium_rate', 'shared_cost', 'voip', 'personal_number', 'pager', 'uan',
    'voicemail'); END IF; END $$;

-- Compliance
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'contact_channel') THEN
  CREATE TYPE contact_channel AS ENUM ('phone', 'email'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'suppression_channel') THEN
  CREATE TYPE suppression_channel AS ENUM ('phone', 'email', 'domain'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'suppression_scope') THEN
  CREATE TYPE suppression_scope AS ENUM ('global', 'campaign'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'suppression_source') THEN
  CREATE TYPE suppression_source AS ENUM ('manual', 'import', 'api', 'agent', 'unsubscribe',
    'bounce', 'complaint', 'system'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'consent_status') THEN
  CREATE TYPE consent_status AS ENUM ('granted', 'withdrawn', 'unknown'); END IF; END $$;
-- GDPR art. 6(1) lawful bases.
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'lawful_basis') THEN
  CREATE TYPE lawful_basis AS ENUM ('consent', 'contract', 'legal_obligation', 'vital_interests',
    'public_task', 'legitimate_interests'); END IF; END $$;

-- Campaigns
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'campaign_status') THEN
  CREATE TYPE campaign_status AS ENUM ('draft', 'scheduled', 'running', 'paused', 'completed',
    'archived'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'dial_mode') THEN
  CREATE TYPE dial_mode AS ENUM ('preview', 'progressive', 'predictive'); END IF; END $$;
-- Telnyx `answering_machine_detection` values, sent as-is on dial.
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'amd_mode') THEN
  CREATE TYPE amd_mode AS ENUM ('disabled', 'detect', 'detect_beep', 'detect_words',
    'greeting_end', 'premium', 'premium_ios_call_screening_detection'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'amd_machine_action') THEN
  CREATE TYPE amd_machine_action AS ENUM ('hangup', 'leave_message', 'route_to_agent'); END IF; END $$;
-- How the abandon ceiling is measured: US = per campaign over 30 days, from end of greeting;
-- UK = per campaign per calendar day, AMD false positives estimated.
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'abandon_rule') THEN
  CREATE TYPE abandon_rule AS ENUM ('us_fcc', 'uk_ofcom'); END IF; END $$;
-- Account lead caps (DESIGN §5): in hopper or in flight / live conversations / positive dispositions.
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'account_cap_mode') THEN
  CREATE TYPE account_cap_mode AS ENUM ('queue_size', 'connected_calls', 'positive_dispositions');
END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'audience_rule_mode') THEN
  CREATE TYPE audience_rule_mode AS ENUM ('include', 'exclude'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'audience_member_status') THEN
  CREATE TYPE audience_member_status AS ENUM ('new', 'scheduled', 'in_progress', 'callback',
    'completed', 'exhausted', 'excluded'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'order_status') THEN
  CREATE TYPE order_status AS ENUM ('draft', 'active', 'paused', 'fulfilled', 'cancelled'); END IF; END $$;

-- Telephony
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'telephony_provider') THEN
  CREATE TYPE telephony_provider AS ENUM ('telnyx'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'caller_id_status') THEN
  CREATE TYPE caller_id_status AS ENUM ('active', 'resting', 'retired'); END IF; END $$;
-- Customer-leg state machine. 'human'/'machine' are the AMD outcomes; 'abandoned' = answered
-- by a person and not bridged in time (the message is played, then the leg ends).
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'call_state') THEN
  CREATE TYPE call_state AS ENUM ('created', 'dialing', 'ringing', 'answered', 'amd_pending',
    'human', 'machine', 'bridged', 'abandoned', 'completed', 'failed'); END IF; END $$;
-- Union of Telnyx detection results (standard and premium AMD). The adapter maps anything
-- unknown to 'not_sure', which the dialer treats as human.
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'amd_result') THEN
  CREATE TYPE amd_result AS ENUM ('human', 'human_residence', 'human_business', 'machine',
    'not_sure', 'silence', 'fax_detected', 'screening'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'agent_state') THEN
  CREATE TYPE agent_state AS ENUM ('offline', 'ready', 'reserved', 'on_call', 'wrap_up', 'paused');
END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'callback_kind') THEN
  CREATE TYPE callback_kind AS ENUM ('personal', 'campaign'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'callback_status') THEN
  CREATE TYPE callback_status AS ENUM ('scheduled', 'completed', 'cancelled', 'missed'); END IF; END $$;

-- Leads: new -> under_review -> approved | rejected; approved -> published; published -> returned (by the
-- client; a replacement is owed). Version 2 named new 'pending_qa' and published 'delivered' (upgraded below).
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'lead_status') THEN
  CREATE TYPE lead_status AS ENUM ('new', 'under_review', 'approved', 'rejected', 'returned', 'published');
END IF; END $$;

-- Email
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'email_provider') THEN
  CREATE TYPE email_provider AS ENUM ('smtp', 'sendgrid', 'ses', 'mailgun'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'dns_record_status') THEN
  CREATE TYPE dns_record_status AS ENUM ('unchecked', 'valid', 'invalid', 'missing'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'warmup_status') THEN
  CREATE TYPE warmup_status AS ENUM ('draft', 'active', 'paused', 'completed'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'ab_winner_criterion') THEN
  CREATE TYPE ab_winner_criterion AS ENUM ('open_rate', 'click_rate', 'manual'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'email_message_status') THEN
  CREATE TYPE email_message_status AS ENUM ('queued', 'rendered', 'sending', 'sent', 'failed',
    'bounced', 'suppressed', 'skipped'); END IF; END $$;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'email_event_type') THEN
  CREATE TYPE email_event_type AS ENUM ('delivered', 'open', 'click', 'bounce_hard', 'bounce_soft',
    'complaint', 'unsubscribe'); END IF; END $$;

-- =============================================================================================
-- Users, roles, authentication, audit (names and columns relied on by crm/ auth code)
-- =============================================================================================

-- A client company buying leads; its users see only their own orders and leads.
CREATE TABLE IF NOT EXISTS client_organisations (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  status client_organisation_status NOT NULL DEFAULT 'active',
  contact_name text NOT NULL DEFAULT '',
  contact_email email_address,
  notes text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS client_organisations_lower_name_idx
  ON client_organisations (lower(name)) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS roles (
  name text PRIMARY KEY,
  description text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO roles (name, description) VALUES
  ('admin',            'Full access: users, roles, settings, every campaign and record'),
  ('campaign_manager', 'Builds and runs campaigns, audiences, scripts, forms and orders'),
  ('supervisor',       'Watches the live floor, manages agents and callbacks'),
  ('agent',            'Works calls in the console and records dispositions'),
  ('quality_analyst',  'Reviews leads: approves, rejects or returns them'),
  ('content_creator',  'Writes email content, scripts and qualification forms'),
  ('client',           'Client user: sees only its organisation''s orders and delivered leads')
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS users (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email text NOT NULL,
  display_name text NOT NULL DEFAULT '',
  password_hash text NOT NULL,
  legacy_role text REFERENCES roles(name),   -- the old single-role column, kept for migrate-roles
  client_organisation_id bigint REFERENCES client_organisations(id),
  is_active boolean NOT NULL DEFAULT true,
  must_change_password boolean NOT NULL DEFAULT false,
  -- Tokens issued (iat) before this instant are refused: set on password change and deactivation.
  tokens_valid_after timestamptz,
  last_login_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deactivated_at timestamptz
);
-- Login is case-insensitive on e-mail.
CREATE UNIQUE INDEX IF NOT EXISTS users_lower_email_idx ON users (lower(email));
CREATE INDEX IF NOT EXISTS users_client_organisation_id_idx
  ON users (client_organisation_id) WHERE client_organisation_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS user_roles (
  user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  role text NOT NULL REFERENCES roles(name),
  assigned_by bigint REFERENCES users(id) ON DELETE SET NULL,
  assigned_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, role)
);
CREATE INDEX IF NOT EXISTS user_roles_role_idx ON user_roles (role);

-- JWT deny-list; rows past expires_at are useless and purged by a periodic job.
CREATE TABLE IF NOT EXISTS revoked_tokens (
  jti uuid PRIMARY KEY,
  user_id bigint REFERENCES users(id) ON DELETE CASCADE,
  revoked_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);

-- Append-only: the application only INSERTs. entity_id is text so any key shape fits.
CREATE TABLE IF NOT EXISTS audit_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  actor_id bigint REFERENCES users(id) ON DELETE SET NULL,
  action text NOT NULL,
  entity_type text NOT NULL,
  entity_id text,
  detail jsonb NOT NULL DEFAULT '{}',
  request_id text,
  client_ip text
);
CREATE INDEX IF NOT EXISTS audit_log_entity_type_entity_id_at_idx ON audit_log (entity_type, entity_id, at);
CREATE INDEX IF NOT EXISTS audit_log_actor_id_at_idx ON audit_log (actor_id, at);
-- BRIN: the table is append-only in time order, so a tiny index serves time-range browsing.
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON audit_log USING brin (at);

-- =============================================================================================
-- Imports and record provenance
-- =============================================================================================

-- A CSV import. Counters are updated as the job streams; rows_read counts data lines.
-- options may name a static list to add imported contacts to (no FK: static_lists is defined
-- further down, and a list deleted meanwhile must not fail the job).
CREATE TABLE IF NOT EXISTS import_jobs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  entity import_entity NOT NULL,
  status import_status NOT NULL DEFAULT 'pending',
  file_name text NOT NULL,
  file_sha256 text CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
  column_mapping jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(column_mapping) = 'object'),
  options jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
  rows_read integer NOT NULL DEFAULT 0 CHECK (rows_read >= 0),
  rows_inserted integer NOT NULL DEFAULT 0 CHECK (rows_inserted >= 0),
  rows_updated integer NOT NULL DEFAULT 0 CHECK (rows_updated >= 0),
  rows_unchanged integer NOT NULL DEFAULT 0 CHECK (rows_unchanged >= 0),
  rows_rejected integer NOT NULL DEFAULT 0 CHECK (rows_rejected >= 0),
  error text,
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,
  started_at timestamptz,
  finished_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (rows_inserted + rows_updated + rows_unchanged + rows_rejected <= rows_read),
  CHECK (status <> 'failed' OR error IS NOT NULL),
  CHECK (finished_at IS NULL OR status IN ('completed', 'failed', 'cancelled'))
);
CREATE INDEX IF NOT EXISTS import_jobs_status_created_at_idx ON import_jobs (status, created_at);

CREATE TABLE IF NOT EXISTS import_rejects (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  import_job_id bigint NOT NULL REFERENCES import_jobs(id) ON DELETE CASCADE,
  line_number integer NOT NULL CHECK (line_number >= 1),   -- 1-based, header included
  column_name text,                                         -- NULL when the whole line is bad
  value text,
  reason text NOT NULL CHECK (btrim(reason) <> ''),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS import_rejects_import_job_id_line_number_idx
  ON import_rejects (import_job_id, line_number);

-- Which import, API call or person created or last changed a record. One row per import job
-- or API request, referenced by the records it touched (and per field in contacts.field_sources).
CREATE TABLE IF NOT EXISTS record_sources (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind record_source_kind NOT NULL,
  label text NOT NULL DEFAULT '',
  import_job_id bigint REFERENCES import_jobs(id) ON DELETE SET NULL,
  user_id bigint REFERENCES users(id) ON DELETE SET NULL,
  request_id text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS record_sources_import_job_id_idx
  ON record_sources (import_job_id) WHERE import_job_id IS NOT NULL;

-- =============================================================================================
-- Accounts and contacts
-- =============================================================================================

-- A company. domain is the ABM key (normalised, e.g. "acme.co.uk"); registrable_domain is the
-- public-suffix-aware parent ("sales.acme.co.uk" -> "acme.co.uk") used to match domain sets.
CREATE TABLE IF NOT EXISTS accounts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  domain dns_domain,
  registrable_domain dns_domain,
  parent_account_id bigint REFERENCES accounts(id) ON DELETE SET NULL,
  industry text,
  employee_count integer CHECK (employee_count >= 0),
  office_timezone iana_timezone,
  office_country iso_country,
  main_line_e164 e164_phone,          -- switchboard; the multi-line rule keys on the account
  custom_fields jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(custom_fields) = 'object'),
  -- Provenance (record_sources ids): no FK, like field_sources below. The application never deletes
  -- a record source, and the per-row FK checks cost ~9 s of a 1,000,000-contact import.
  source_id bigint,
  last_source_id bigint,
  -- {"<field>": <record_sources.id>, ...}: who set each field last
  field_sources jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(field_sources) = 'object'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz,
  CHECK (parent_account_id IS DISTINCT FROM id)
);
-- text_pattern_ops serves both the uniqueness (equality) and search's prefix matches: one index, not two.
CREATE UNIQUE INDEX IF NOT EXISTS accounts_domain_idx ON accounts (domain text_pattern_ops)
  WHERE deleted_at IS NULL AND domain IS NOT NULL;
CREATE INDEX IF NOT EXISTS accounts_registrable_domain_idx ON accounts (registrable_domain)
  WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS accounts_lower_name_idx ON accounts (lower(name)) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS accounts_name_search_idx ON accounts
  USING gin (to_tsvector('simple', name)) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS accounts_main_line_e164_idx ON accounts (main_line_e164)
  WHERE deleted_at IS NULL AND main_line_e164 IS NOT NULL;
CREATE INDEX IF NOT EXISTS accounts_parent_account_id_idx ON accounts (parent_account_id)
  WHERE parent_account_id IS NOT NULL;

-- A person. email/phone_e164 hold the normalised values used for dialling, sending and
-- suppression; *_original keep what was supplied. An invalid value is kept only as original
-- with a reason, so a bad number can never be dialled.
CREATE TABLE IF NOT EXISTS contacts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id bigint REFERENCES accounts(id) ON DELETE SET NULL,
  first_name text NOT NULL DEFAULT '',
  last_name text NOT NULL DEFAULT '',
  job_title text NOT NULL DEFAULT '',
  email email_address,
  email_original text,
  email_invalid_reason text,
  phone_e164 e164_phone,
  phone_extension text CHECK (phone_extension ~ '^[0-9]{1,10}$'),
  phone_original text,
  phone_country iso_country,
  phone_line_type phone_line_type NOT NULL DEFAULT 'unknown',
  phone_invalid_reason text,
  timezone iana_timezone,             -- contact's own zone; else account office zone; else campaign rule
  country iso_country,
  custom_fields jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(custom_fields) = 'object'),
  source_id bigint,                   -- created by (record_sources.id; no FK: see accounts)
  last_source_id bigint,              -- last changed by
  -- {"<field>": <record_sources.id>, ...}: who set each field last (no FK possible in jsonb)
  field_sources jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(field_sources) = 'object'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz,
  CHECK (email IS NULL OR email_invalid_reason IS NULL),
  CHECK (phone_e164 IS NULL OR phone_invalid_reason IS NULL)
);
-- One live contact per e-mail, compared case-insensitively: the import upsert key.
-- text_pattern_ops: equality for the identity and prefix matches for search, in one index.
CREATE UNIQUE INDEX IF NOT EXISTS contacts_lower_email_idx ON contacts (lower(email) text_pattern_ops)
  WHERE deleted_at IS NULL AND email IS NOT NULL;
-- Not unique: colleagues share a switchboard number.
CREATE INDEX IF NOT EXISTS contacts_phone_e164_idx ON contacts (phone_e164)
  WHERE deleted_at IS NULL AND phone_e164 IS NOT NULL;
CREATE INDEX IF NOT EXISTS contacts_account_id_idx ON contacts (account_id) WHERE deleted_at IS NULL;
-- Global search (built-in full text and prefix patterns: the embedded PostgreSQL has no pg_trgm).
CREATE INDEX IF NOT EXISTS contacts_name_search_idx ON contacts
  USING gin (to_tsvector('simple', first_name || ' ' || last_name)) WHERE deleted_at IS NULL;

-- =============================================================================================
-- Static lists, segments, domain sets
-- =============================================================================================

CREATE TABLE IF NOT EXISTS static_lists (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  description text NOT NULL DEFAULT '',
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS static_lists_lower_name_idx ON static_lists (lower(name)) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS list_members (
  list_id bigint NOT NULL REFERENCES static_lists(id) ON DELETE CASCADE,
  contact_id bigint NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  source_id bigint REFERENCES record_sources(id) ON DELETE SET NULL,
  added_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (list_id, contact_id)
);
CREATE INDEX IF NOT EXISTS list_members_contact_id_idx ON list_members (contact_id);

-- A saved filter over contacts (and their accounts). The JSON is compiled by the application
-- from a whitelist of fields and operators, never interpolated as SQL.
CREATE TABLE IF NOT EXISTS segments (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  description text NOT NULL DEFAULT '',
  filter_definition jsonb NOT NULL CHECK (jsonb_typeof(filter_definition) = 'object'),
  last_evaluated_at timestamptz,
  last_count integer CHECK (last_count >= 0),
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS segments_lower_name_idx ON segments (lower(name)) WHERE deleted_at IS NULL;

-- A set of company domains: a target account list when included, a company suppression list
-- (client's customers, competitors) when excluded. The role is chosen per campaign.
CREATE TABLE IF NOT EXISTS domain_sets (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  description text NOT NULL DEFAULT '',
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS domain_sets_lower_name_idx ON domain_sets (lower(name)) WHERE deleted_at IS NULL;

-- One uploaded entry: a domain (normalised) or a company name, and what it matched. Entries are unique
-- per set by match_key ('d:<domain>' or 'n:<folded name>').
CREATE TABLE IF NOT EXISTS domain_set_items (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  domain_set_id bigint NOT NULL REFERENCES domain_sets(id) ON DELETE CASCADE,
  entry text NOT NULL CHECK (btrim(entry) <> ''),            -- as uploaded
  match_key text NOT NULL,
  domain dns_domain,
  registrable_domain dns_domain,
  company_name text,
  match_status text NOT NULL DEFAULT 'unmatched' CHECK (match_status IN ('matched', 'unmatched', 'ambiguous')),
  match_method text CHECK (match_method IN ('exact', 'subdomain', 'alias', 'name')),
  confidence numeric(4, 3) CHECK (confidence BETWEEN 0 AND 1),
  account_id bigint REFERENCES accounts(id) ON DELETE SET NULL,   -- resolved match, if any
  candidate_account_ids bigint[] NOT NULL DEFAULT '{}',           -- when ambiguous
  source_id bigint REFERENCES record_sources(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (domain_set_id, match_key),
  CHECK ((domain IS NULL) <> (company_name IS NULL)),
  CHECK (match_status <> 'matched' OR account_id IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS domain_set_items_registrable_domain_idx ON domain_set_items (registrable_domain);
CREATE INDEX IF NOT EXISTS domain_set_items_account_id_idx ON domain_set_items (account_id)
  WHERE account_id IS NOT NULL;

-- Other domains a company is known by (acquisitions, regional sites): matched like its own domain.
CREATE TABLE IF NOT EXISTS account_domain_aliases (
  account_id bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  domain dns_domain NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account_id, domain)
);
CREATE INDEX IF NOT EXISTS account_domain_aliases_domain_idx ON account_domain_aliases (domain);

-- =============================================================================================
-- Campaign content: scripts, qualification forms, dispositions
-- =============================================================================================

-- Agent script with merge fields ({{contact.first_name}}); version bumps on each edit.
CREATE TABLE IF NOT EXISTS scripts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  body text NOT NULL DEFAULT '',
  version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS scripts_lower_name_idx ON scripts (lower(name)) WHERE deleted_at IS NULL;

-- fields: ordered array of {key, label, type, required, options, validation}.
CREATE TABLE IF NOT EXISTS qualification_forms (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  description text NOT NULL DEFAULT '',
  fields jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(fields) = 'array'),
  version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS qualification_forms_lower_name_idx
  ON qualification_forms (lower(name)) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS disposition_catalogues (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  code text NOT NULL UNIQUE CHECK (code ~ '^[a-z][a-z0-9_]{0,62}$'),
  name text NOT NULL CHECK (btrim(name) <> ''),
  description text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);

-- One outcome an attempt can end with. is_system rows are set by the dialer (no answer, busy,
-- machine...) and hidden from agents. retry_after_minutes NULL = the campaign's default delay.
-- Codes are unique for the catalogue's whole life (not only while live) because recorded
-- dispositions and leads keep the code as a snapshot.
CREATE TABLE IF NOT EXISTS dispositions (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  catalogue_id bigint NOT NULL REFERENCES disposition_catalogues(id) ON DELETE CASCADE,
  code text NOT NULL CHECK (code ~ '^[a-z][a-z0-9_]{0,62}$'),
  label text NOT NULL CHECK (btrim(label) <> ''),
  is_positive boolean NOT NULL DEFAULT false,   -- creates a lead; counts toward account caps
  is_dnc boolean NOT NULL DEFAULT false,        -- adds a phone suppression
  is_callback boolean NOT NULL DEFAULT false,   -- requires a callback time
  is_final boolean NOT NULL DEFAULT false,      -- contact is done for this campaign
  is_system boolean NOT NULL DEFAULT false,
  retry_after_minutes integer CHECK (retry_after_minutes >= 0),
  hotkey text CHECK (hotkey ~ '^[0-9A-Za-z]$'),
  sort_order integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz,
  UNIQUE (catalogue_id, code),
  CHECK (NOT (is_final AND is_callback)),
  CHECK (NOT is_dnc OR is_final),
  CHECK (NOT is_positive OR NOT is_dnc)
);

-- Seed a default catalogue, once: the dispositions are inserted only in the statement that
-- creates the catalogue, so later edits or deletions by admins are never undone on restart.
WITH new_catalogue AS (
  INSERT INTO disposition_catalogues (code, name, description)
  SELECT 'default', 'Default B2B outcomes', 'Seeded at first start; copy it to customise'
  WHERE NOT EXISTS (SELECT 1 FROM disposition_catalogues WHERE code = 'default')
  ON CONFLICT DO NOTHING
  RETURNING id
)
INSERT INTO dispositions (catalogue_id, code, label, is_positive, is_dnc, is_callback, is_final,
                          is_system, retry_after_minutes, sort_order)
SELECT c.id, v.code, v.label, v.is_positive, v.is_dnc, v.is_callback, v.is_final, v.is_system,
       v.retry_after_minutes, v.sort_order
FROM new_catalogue c
CROSS JOIN (VALUES
  ('qualified',       'Qualified lead',              true,  false, false, true,  false, NULL::integer, 10),
  ('callback',        'Callback requested',          false, false, true,  false, false, NULL,  20),
  ('gatekeeper',      'Gatekeeper, no access',       false, false, false, false, false, 1440,  30),
  ('voicemail_left',  'Left voicemail',              false, false, false, false, false, 1440,  40),
  ('not_interested',  'Not interested',              false, false, false, true,  false, NULL,  50),
  ('left_company',    'No longer with company',      false, false, false, true,  false, NULL,  60),
  ('wrong_number',    'Wrong number',                false, false, false, true,  false, NULL,  70),
  ('do_not_call',     'Do not call',                 false, true,  false, true,  false, NULL,  80),
  ('no_answer',       'No answer',                   false, false, false, false, true,  120,  100),
  ('busy',            'Busy',                        false, false, false, false, true,  30,   110),
  ('machine',         'Answering machine',           false, false, false, false, true,  240,  120),
  ('abandoned',       'Abandoned (no agent in time)', false, false, false, false, true, NULL, 130),
  ('failed',          'Carrier failure',             false, false, false, false, true,  60,   140),
  ('invalid_number',  'Invalid number',              false, false, false, true,  true,  NULL, 150)
) AS v(code, label, is_positive, is_dnc, is_callback, is_final, is_system, retry_after_minutes, sort_order)
ON CONFLICT DO NOTHING;

-- =============================================================================================
-- Telephony configuration
-- =============================================================================================

-- A Telnyx Call Control application. Exactly one live row may be the default.
CREATE TABLE IF NOT EXISTS telephony_connections (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  provider telephony_provider NOT NULL DEFAULT 'telnyx',
  connection_id text NOT NULL,              -- Call Control App id, sent on every dial
  credential_connection_id text,            -- credential connection for agents' WebRTC legs
  api_key_encrypted bytea,                  -- NULL in sandbox mode
  public_key text,                          -- Ed25519 webhook key, Base64 of the raw 32 bytes
  max_channels integer CHECK (max_channels > 0),
  max_dials_per_second integer NOT NULL DEFAULT 30 CHECK (max_dials_per_second BETWEEN 1 AND 1000),
  is_default boolean NOT NULL DEFAULT false,
  is_active boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz,
  CHECK (NOT (is_default AND deleted_at IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS telephony_connections_is_default_idx
  ON telephony_connections (is_default) WHERE is_default;
CREATE UNIQUE INDEX IF NOT EXISTS telephony_connections_lower_name_idx
  ON telephony_connections (lower(name)) WHERE deleted_at IS NULL;

-- A per-agent SIP credential (Telnyx telephony credential) used by the browser softphone.
CREATE TABLE IF NOT EXISTS telephony_credentials (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  telephony_connection_id bigint NOT NULL REFERENCES telephony_connections(id) ON DELETE RESTRICT,
  provider_credential_id text,              -- Telnyx credential id (for token minting)
  sip_username text NOT NULL UNIQUE,
  secret_encrypted bytea NOT NULL,
  expires_at timestamptz,
  revoked_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- One usable credential per agent and connection (two tabs on one credential steal calls).
CREATE UNIQUE INDEX IF NOT EXISTS telephony_credentials_user_id_telephony_connection_id_idx
  ON telephony_credentials (user_id, telephony_connection_id) WHERE revoked_at IS NULL;

-- =============================================================================================
-- Email infrastructure: sending domains, tracking domains, IP pools, senders, warmup
-- =============================================================================================

CREATE TABLE IF NOT EXISTS email_domains (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  domain dns_domain NOT NULL,
  spf_status dns_record_status NOT NULL DEFAULT 'unchecked',
  dkim_status dns_record_status NOT NULL DEFAULT 'unchecked',
  dmarc_status dns_record_status NOT NULL DEFAULT 'unchecked',
  dkim_selector text CHECK (dkim_selector ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
  dkim_private_key_encrypted bytea,         -- only when we sign ourselves (SMTP relay)
  last_checked_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS email_domains_domain_idx ON email_domains (domain) WHERE deleted_at IS NULL;

-- Host for open pixels, click redirects and unsubscribe links (CNAME to the daemon).
CREATE TABLE IF NOT EXISTS tracking_domains (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  domain dns_domain NOT NULL,
  cname_status dns_record_status NOT NULL DEFAULT 'unchecked',
  is_default boolean NOT NULL DEFAULT false,
  last_checked_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz,
  CHECK (NOT (is_default AND deleted_at IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS tracking_domains_domain_idx ON tracking_domains (domain) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS tracking_domains_is_default_idx ON tracking_domains (is_default) WHERE is_default;

-- A set of sending IPs: our own SMTP addresses, or a provider-side pool name (SendGrid
-- ip_pool_name, SES dedicated pool).
CREATE TABLE IF NOT EXISTS ip_pools (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  provider email_provider NOT NULL,
  provider_pool_name text,
  ip_addresses inet[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS ip_pools_lower_name_idx ON ip_pools (lower(name)) WHERE deleted_at IS NULL;

-- A From identity bound to one provider account. postal_address is the CAN-SPAM physical
-- address the pre-send guard requires in every rendered message.
CREATE TABLE IF NOT EXISTS sender_profiles (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  from_name text NOT NULL DEFAULT '',
  from_email email_address NOT NULL,
  reply_to email_address,
  provider email_provider NOT NULL,
  credentials_encrypted bytea,              -- API key or SMTP password; NULL for a local sink
  provider_settings jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(provider_settings) = 'object'),
  email_domain_id bigint REFERENCES email_domains(id) ON DELETE RESTRICT,
  ip_pool_id bigint REFERENCES ip_pools(id) ON DELETE SET NULL,
  postal_address text NOT NULL DEFAULT '',
  max_per_second numeric(10,2) CHECK (max_per_second > 0),
  daily_cap integer CHECK (daily_cap > 0),
  is_active boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS sender_profiles_lower_name_idx ON sender_profiles (lower(name)) WHERE deleted_at IS NULL;

-- A warmup ramp for exactly one of: a sending domain, an IP pool, a sender profile.
-- Day 0 is started_on; after the last day the plan is completed and caps no longer apply.
-- The thresholds hold the ramp when bounces or complaints cross them.
CREATE TABLE IF NOT EXISTS warmup_plans (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  status warmup_status NOT NULL DEFAULT 'draft',
  email_domain_id bigint REFERENCES email_domains(id) ON DELETE CASCADE,
  ip_pool_id bigint REFERENCES ip_pools(id) ON DELETE CASCADE,
  sender_profile_id bigint REFERENCES sender_profiles(id) ON DELETE CASCADE,
  started_on date,
  max_bounce_rate numeric(5,4) NOT NULL DEFAULT 0.03 CHECK (max_bounce_rate BETWEEN 0 AND 1),
  max_complaint_rate numeric(5,4) NOT NULL DEFAULT 0.001 CHECK (max_complaint_rate BETWEEN 0 AND 1),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (num_nonnulls(email_domain_id, ip_pool_id, sender_profile_id) = 1),
  CHECK (status = 'draft' OR started_on IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS warmup_plans_status_idx ON warmup_plans (status) WHERE status = 'active';

-- The ramp itself, one row per day (the admin API expands exponential plans into rows).
CREATE TABLE IF NOT EXISTS warmup_plan_days (
  warmup_plan_id bigint NOT NULL REFERENCES warmup_plans(id) ON DELETE CASCADE,
  day_number integer NOT NULL CHECK (day_number >= 0),
  daily_cap integer NOT NULL CHECK (daily_cap >= 0),
  hourly_cap integer CHECK (hourly_cap >= 0),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (warmup_plan_id, day_number)
);

-- =============================================================================================
-- Campaigns, audiences, orders
-- =============================================================================================

-- One table for both channels. Phone settings always have defaults (ignored for email);
-- email-only references must be NULL on phone campaigns.
-- calling_window: {"mon": [["09:00","17:00"]], ..., "holidays": ["2026-12-25"]} in the
-- contact's local time; {} = the engine default (weekdays 09:00-17:00).
-- timezone_rules: order of zone sources and the fallback, e.g.
-- {"sources": ["contact", "account_office", "phone_country"], "fallback": "UTC"}; {} = default.
CREATE TABLE IF NOT EXISTS campaigns (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (btrim(name) <> ''),
  description text NOT NULL DEFAULT '',
  channel contact_channel NOT NULL,
  status campaign_status NOT NULL DEFAULT 'draft',
  client_organisation_id bigint REFERENCES client_organisations(id) ON DELETE RESTRICT,
  starts_at timestamptz,                    -- scheduled start (email: send time)
  ends_at timestamptz,
  started_at timestamptz,                   -- actual first run
  completed_at timestamptz,
  -- phone
  dial_mode dial_mode NOT NULL DEFAULT 'progressive',
  -- 5% is the highest ceiling any regulator in scope allows (CRTC); US/UK are 3%.
  max_abandon_rate numeric(5,4) NOT NULL DEFAULT 0.03 CHECK (max_abandon_rate BETWEEN 0 AND 0.05),
  abandon_rule abandon_rule NOT NULL DEFAULT 'us_fcc',
  -- no redial of an abandoned contact for this long (Ofcom: 72 h); sets members.locked_until
  abandon_lockout_hours integer NOT NULL DEFAULT 72 CHECK (abandon_lockout_hours >= 0),
  abandon_message text NOT NULL DEFAULT '',   -- identification + opt-out message (TTS)
  lines_per_agent numeric(4,2) NOT NULL DEFAULT 3.0 CHECK (lines_per_agent BETWEEN 1 AND 20),
  -- US 64.1200(a)(6) and Ofcom: ring at least 15 s; Telnyx accepts up to 600.
  ring_timeout_secs integer NOT NULL DEFAULT 25 CHECK (ring_timeout_secs BETWEEN 15 AND 600),
  amd_mode amd_mode NOT NULL DEFAULT 'disabled',
  amd_machine_action amd_machine_action NOT NULL DEFAULT 'hangup',
  machine_message text,                     -- voicemail drop for 'leave_message'
  caller_id_e164 e164_phone,                -- fixed caller id; NULL = draw from caller_id_numbers
  telephony_connection_id bigint REFERENCES telephony_connections(id) ON DELETE RESTRICT,
  calling_window jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(calling_window) = 'object'),
  timezone_rules jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(timezone_rules) = 'object'),
  consent_required boolean NOT NULL DEFAULT false,
  max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
  default_retry_minutes integer NOT NULL DEFAULT 240 CHECK (default_retry_minutes >= 0),
  account_cap_mode account_cap_mode,
  account_cap integer CHECK (account_cap > 0),
  script_id bigint REFERENCES scripts(id) ON DELETE RESTRICT,
  qualification_form_id bigint REFERENCES qualification_forms(id) ON DELETE RESTRICT,
  disposition_catalogue_id bigint REFERENCES disposition_catalogues(id) ON DELETE RESTRICT,
  -- email
  sender_profile_id bigint REFERENCES sender_profiles(id) ON DELETE RESTRICT,
  tracking_domain_id bigint REFERENCES tracking_domains(id) ON DELETE RESTRICT,
  ab_winner_criterion ab_winner_criterion,
  ab_test_share numeric(5,2) CHECK (ab_test_share > 0 AND ab_test_share <= 100),  -- % of audience in the test phase
  ab_decide_after_minutes integer CHECK (ab_decide_after_minutes > 0),
  -- everything else (hopper size, wrap-up seconds, frequency caps...): validated by the app
  settings jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz,
  CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at),
  CHECK (status <> 'scheduled' OR starts_at IS NOT NULL),
  CHECK ((account_cap_mode IS NULL) = (account_cap IS NULL)),
  CHECK (amd_machine_action <> 'leave_message' OR machine_message IS NOT NULL),
  CHECK (channel = 'email' OR (sender_profile_id IS NULL AND tracking_domain_id IS NULL
                               AND ab_winner_criterion IS NULL AND ab_test_share IS NULL
                               AND ab_decide_after_minutes IS NULL)),
  -- an email campaign cannot leave draft without a sender
  CHECK (channel <> 'email' OR status IN ('draft', 'archived') OR sender_profile_id IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS campaigns_status_idx ON campaigns (status) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS campaigns_client_organisation_id_idx ON campaigns (client_organisation_id)
  WHERE deleted_at IS NULL;

-- What the audience is built from: each row includes or excludes one list, segment or
-- domain set (exclude domain sets = company suppression; include = target account list).
CREATE TABLE IF NOT EXISTS campaign_audience_rules (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
  mode audience_rule_mode NOT NULL,
  list_id bigint REFERENCES static_lists(id) ON DELETE RESTRICT,
  segment_id bigint REFERENCES segments(id) ON DELETE RESTRICT,
  domain_set_id bigint REFERENCES domain_sets(id) ON DELETE RESTRICT,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (num_nonnulls(list_id, segment_id, domain_set_id) = 1)
);
CREATE INDEX IF NOT EXISTS campaign_audience_rules_campaign_id_idx ON campaign_audience_rules (campaign_id);

-- Email content. A campaign without a test has one variant 'A' with split_share 100.
-- Shares summing to 100 is checked by the application (a row CHECK cannot see siblings).
CREATE TABLE IF NOT EXISTS email_variants (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
  variant_key text NOT NULL CHECK (variant_key ~ '^[A-Z]$'),
  subject text NOT NULL CHECK (btrim(subject) <> ''),
  preheader text NOT NULL DEFAULT '',
  html_body text NOT NULL,
  text_body text NOT NULL DEFAULT '',
  split_share numeric(5,2) NOT NULL DEFAULT 100 CHECK (split_share >= 0 AND split_share <= 100),
  is_winner boolean NOT NULL DEFAULT false,
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS email_variants_campaign_id_variant_key_idx
  ON email_variants (campaign_id, variant_key) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS email_variants_campaign_id_winner_idx
  ON email_variants (campaign_id) WHERE is_winner;

-- A client's order: how many qualified leads, with what per-account cap, over which dates.
-- An order may be sold before its campaign exists, but only while it is a draft.
CREATE TABLE IF NOT EXISTS campaign_orders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  client_organisation_id bigint NOT NULL REFERENCES client_organisations(id) ON DELETE RESTRICT,
  campaign_id bigint REFERENCES campaigns(id) ON DELETE RESTRICT,   -- version 2's one campaign; see order_campaigns
  name text NOT NULL CHECK (btrim(name) <> ''),
  reference text,                           -- client's PO or insertion-order number
  status order_status NOT NULL DEFAULT 'draft',
  lead_target integer NOT NULL CHECK (lead_target > 0),   -- the quantity ordered
  per_account_cap integer CHECK (per_account_cap > 0),
  -- filters: job_functions, seniorities, min_employees, max_employees, industries, countries,
  -- account_list_id (a static list's accounts), domain_set_id (its matched accounts); see crm/orders/filters.py
  criteria jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(criteria) = 'object'),
  starts_on date,
  ends_on date,
  weekly_pace integer CHECK (weekly_pace > 0),            -- leads a week at most, cumulative from starts_on
  price_per_lead numeric(12,2) CHECK (price_per_lead >= 0),
  currency text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
  over_delivery_pct integer NOT NULL DEFAULT 0 CHECK (over_delivery_pct BETWEEN 0 AND 100),
  returns_window_days integer NOT NULL DEFAULT 14 CHECK (returns_window_days BETWEEN 0 AND 365),
  dedupe_scope text NOT NULL DEFAULT 'order' CHECK (dedupe_scope IN ('order', 'client')),
  webhook_url text CHECK (webhook_url IS NULL OR webhook_url ~ '^https?://'),
  webhook_secret_encrypted bytea,           -- HMAC key for pushed deliveries, sealed like other secrets
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (ends_on IS NULL OR starts_on IS NULL OR ends_on >= starts_on)
);
CREATE INDEX IF NOT EXISTS campaign_orders_client_organisation_id_status_idx
  ON campaign_orders (client_organisation_id, status);

-- Which campaigns work for which orders (many to many), linked by campaign managers.
CREATE TABLE IF NOT EXISTS order_campaigns (
  order_id bigint NOT NULL REFERENCES campaign_orders(id) ON DELETE CASCADE,
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
  linked_by bigint REFERENCES users(id) ON DELETE SET NULL,
  linked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (order_id, campaign_id)
);
CREATE INDEX IF NOT EXISTS order_campaigns_campaign_id_idx ON order_campaigns (campaign_id);

-- The audience is frozen at start (and may be topped up): each freeze is a snapshot.
CREATE TABLE IF NOT EXISTS campaign_audience_snapshots (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
  rules jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(rules) = 'array'),  -- the rules as applied
  member_count integer NOT NULL DEFAULT 0 CHECK (member_count >= 0),
  excluded_count integer NOT NULL DEFAULT 0 CHECK (excluded_count >= 0),
  taken_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS campaign_audience_snapshots_campaign_id_created_at_idx
  ON campaign_audience_snapshots (campaign_id, created_at);

-- One row per campaign and contact: the hopper's source and the answer to "why is this
-- contact (not) being dialled?". account_id is copied from the contact at snapshot time so
-- account caps and the multi-line rule are one index lookup.
-- locked_until: no redial before this time (UK: 72 h after an abandoned call).
CREATE TABLE IF NOT EXISTS campaign_members (
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
  contact_id bigint NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  snapshot_id bigint REFERENCES campaign_audience_snapshots(id) ON DELETE SET NULL,
  account_id bigint REFERENCES accounts(id) ON DELETE SET NULL,
  status audience_member_status NOT NULL DEFAULT 'new',
  priority integer NOT NULL DEFAULT 0,      -- higher first; set by the orders' steering (crm/orders/steering.py)
  -- Every order of the campaign this contact could serve is full: not dialled until one has room again.
  held_for_orders boolean NOT NULL DEFAULT false,
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  last_attempt_at timestamptz,
  next_attempt_at timestamptz,              -- NULL = as soon as the window allows
  last_outcome text CHECK (last_outcome ~ '^[a-z][a-z0-9_]{0,62}$'),  -- disposition or system code
  locked_until timestamptz,
  exclusion_reason text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (campaign_id, contact_id),
  CHECK (status <> 'excluded' OR exclusion_reason IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS campaign_members_campaign_id_status_next_attempt_at_idx
  ON campaign_members (campaign_id, status, next_attempt_at);
-- Hopper refill: dialable members in priority order.
CREATE INDEX IF NOT EXISTS campaign_members_campaign_id_priority_next_attempt_at_idx
  ON campaign_members (campaign_id, priority DESC, next_attempt_at NULLS FIRST)
  WHERE status IN ('new', 'scheduled');
CREATE INDEX IF NOT EXISTS campaign_members_campaign_id_account_id_status_idx
  ON campaign_members (campaign_id, account_id, status) WHERE account_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS campaign_members_contact_id_idx ON campaign_members (contact_id);

-- Caller ids we own. campaign_id NULL = shared pool. 'resting' numbers are skipped until
-- rest_until (reputation recovery).
CREATE TABLE IF NOT EXISTS caller_id_numbers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  e164 e164_phone NOT NULL UNIQUE,
  telephony_connection_id bigint REFERENCES telephony_connections(id) ON DELETE RESTRICT,
  campaign_id bigint REFERENCES campaigns(id) ON DELETE SET NULL,
  country iso_country,
  label text NOT NULL DEFAULT '',
  status caller_id_status NOT NULL DEFAULT 'active',
  rest_until timestamptz,
  last_used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (status <> 'resting' OR rest_until IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS caller_id_numbers_campaign_id_status_idx ON caller_id_numbers (campaign_id, status);

-- =============================================================================================
-- Compliance: suppressions and consent
-- =============================================================================================

-- Do-not-contact entries by value: a phone (E.164), an e-mail (normalised) or a company
-- domain. Never hard-deleted: lifting keeps the row for the record. An entry is in force when
-- lifted_at IS NULL AND (expires_at IS NULL OR expires_at > now()); expiry cannot be part of an
-- index predicate (now() is not immutable), so re-adding an expired entry renews it
-- (ON CONFLICT ... DO UPDATE) rather than inserting a second row.
CREATE TABLE IF NOT EXISTS suppressions (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  channel suppression_channel NOT NULL,
  scope suppression_scope NOT NULL DEFAULT 'global',
  campaign_id bigint REFERENCES campaigns(id) ON DELETE CASCADE,
  value text NOT NULL,
  source suppression_source NOT NULL,
  reason text NOT NULL DEFAULT '',
  detail jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object'),  -- evidence
  import_job_id bigint REFERENCES import_jobs(id) ON DELETE SET NULL,
  added_by bigint REFERENCES users(id) ON DELETE SET NULL,
  added_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  lifted_at timestamptz,
  lifted_by bigint REFERENCES users(id) ON DELETE SET NULL,
  lift_reason text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((scope = 'campaign') = (campaign_id IS NOT NULL)),
  CHECK (expires_at IS NULL OR expires_at > added_at),
  CHECK (lifted_at IS NULL OR lift_reason IS NOT NULL),
  CHECK (CASE channel
           WHEN 'phone'  THEN value ~ '^\+[1-9][0-9]{5,14}$'
           WHEN 'email'  THEN value = lower(value) AND value ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'
           WHEN 'domain' THEN value ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$'
         END)
);
-- At most one active entry per (channel, scope, campaign, value); NULL campaign = global.
CREATE UNIQUE INDEX IF NOT EXISTS suppressions_channel_scope_campaign_id_value_idx
  ON suppressions (channel, scope, campaign_id, value) NULLS NOT DISTINCT WHERE lifted_at IS NULL;
-- The pre-dial / pre-send check: "is this number / address / domain suppressed anywhere?"
CREATE INDEX IF NOT EXISTS suppressions_channel_value_idx
  ON suppressions (channel, value) WHERE lifted_at IS NULL;
CREATE INDEX IF NOT EXISTS suppressions_campaign_id_idx ON suppressions (campaign_id)
  WHERE campaign_id IS NOT NULL AND lifted_at IS NULL;

-- Append-only consent history; the current state of a (contact, channel) is its latest row.
-- recorded_at is when consent was given or withdrawn (may predate the insert on import).
-- proof: evidence such as form URL, IP, call attempt id, recording reference.
CREATE TABLE IF NOT EXISTS consents (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  contact_id bigint NOT NULL REFERENCES contacts(id) ON DELETE RESTRICT,
  channel contact_channel NOT NULL,
  status consent_status NOT NULL,
  lawful_basis lawful_basis,
  source record_source_kind NOT NULL,
  source_id bigint REFERENCES record_sources(id) ON DELETE SET NULL,
  proof jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(proof) = 'object'),
  recorded_at timestamptz NOT NULL DEFAULT now(),
  recorded_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS consents_contact_id_channel_recorded_at_idx
  ON consents (contact_id, channel, recorded_at DESC, id DESC);

-- =============================================================================================
-- Dialer runtime: agent sessions, call attempts, carrier events, callbacks, dispositions
-- =============================================================================================

-- One login of an agent to a campaign. parked_call_control_id is the agent's nailed-up leg,
-- bridged to each answered customer. node_id says which daemon node holds the session.
CREATE TABLE IF NOT EXISTS agent_sessions (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES users(id) ON DELETE RESTRICT,
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE RESTRICT,
  telephony_credential_id bigint REFERENCES telephony_credentials(id) ON DELETE SET NULL,
  state agent_state NOT NULL DEFAULT 'offline',
  state_changed_at timestamptz NOT NULL DEFAULT now(),
  pause_reason text CHECK (pause_reason ~ '^[a-z][a-z0-9_]{0,62}$'),
  parked_call_control_id text,
  node_id text,
  started_at timestamptz NOT NULL DEFAULT now(),
  last_heartbeat_at timestamptz,
  ended_at timestamptz,
  end_reason text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (ended_at IS NULL OR state = 'offline'),
  CHECK (state = 'paused' OR pause_reason IS NULL)
);
-- An agent is logged in at most once.
CREATE UNIQUE INDEX IF NOT EXISTS agent_sessions_user_id_idx ON agent_sessions (user_id) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS agent_sessions_campaign_id_idx ON agent_sessions (campaign_id) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS agent_sessions_user_id_started_at_idx ON agent_sessions (user_id, started_at);

-- One outbound customer leg. The row is committed before the dial, in state 'created' with
-- its dial_command_id: a retry reuses that id (Telnyx ignores repeats within 60 s), and after a
-- crash the restart reconciliation finds the row, so a contact is never dialled twice blindly.
-- State 'abandoned' is final for a leg that never reached an agent (the message may still be
-- playing until ended_at is set); live legs are those with ended_at NULL. The abandoned flag
-- is what abandon-rate accounting reads: it is also set on a late bridge (more than 2 s after
-- the end of the greeting), which otherwise completes normally.
-- account_id is copied from the contact for the multi-line rule and connected-call caps.
CREATE TABLE IF NOT EXISTS call_attempts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE RESTRICT,
  contact_id bigint NOT NULL REFERENCES contacts(id) ON DELETE RESTRICT,
  account_id bigint REFERENCES accounts(id) ON DELETE SET NULL,
  attempt_number integer NOT NULL CHECK (attempt_number >= 1),
  agent_user_id bigint REFERENCES users(id) ON DELETE SET NULL,
  agent_session_id bigint REFERENCES agent_sessions(id) ON DELETE SET NULL,
  telephony_connection_id bigint REFERENCES telephony_connections(id) ON DELETE RESTRICT,
  to_e164 e164_phone NOT NULL,
  from_e164 e164_phone NOT NULL,
  call_control_id text UNIQUE,              -- known after the dial response
  call_leg_id text,
  call_session_id text,
  client_state text,                        -- Base64, echoed by Telnyx in every webhook
  dial_command_id text NOT NULL UNIQUE,
  bridge_command_id text,
  hangup_command_id text,
  playback_command_id text,                 -- abandon or voicemail message
  state call_state NOT NULL DEFAULT 'created',
  state_changed_at timestamptz NOT NULL DEFAULT now(),
  dialed_at timestamptz,
  answered_at timestamptz,
  greeting_ended_at timestamptz,
  bridged_at timestamptz,
  ended_at timestamptz,
  amd_result amd_result,
  amd_greeting_result text CHECK (amd_greeting_result IN
    ('beep_detected', 'ended', 'not_sure', 'no_beep_detected', 'prompt_ended')),
  -- Carrier vocabulary (normal_clearing, timeout, user_busy, ...): open-ended, format-checked.
  hangup_cause text CHECK (hangup_cause ~ '^[a-z][a-z0-9_]*$'),
  hangup_source text CHECK (hangup_source IN ('caller', 'callee', 'unknown')),
  sip_hangup_cause text,
  abandoned boolean NOT NULL DEFAULT false,
  failure_reason text,                      -- API error on dial, etc.
  -- The conversation's recording (campaigns with record_calls), copied from the carrier's short-lived link
  -- into <data_dir>/recordings: the path below it.
  recording_file text,
  recording_saved_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (NOT abandoned OR answered_at IS NOT NULL),
  CHECK (state NOT IN ('completed', 'failed') OR ended_at IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS call_attempts_campaign_id_created_at_idx ON call_attempts (campaign_id, created_at);
CREATE INDEX IF NOT EXISTS call_attempts_contact_id_created_at_idx ON call_attempts (contact_id, created_at);
-- Abandon-rate windows (FCC 30 days, Ofcom per day) count answered calls by answer time.
CREATE INDEX IF NOT EXISTS call_attempts_campaign_id_answered_at_idx
  ON call_attempts (campaign_id, answered_at) WHERE answered_at IS NOT NULL;
-- Live legs: restart reconciliation with the carrier and the multi-line business rule.
CREATE INDEX IF NOT EXISTS call_attempts_account_id_live_idx ON call_attempts (account_id)
  WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS call_attempts_campaign_id_live_idx ON call_attempts (campaign_id)
  WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS call_attempts_call_session_id_idx ON call_attempts (call_session_id)
  WHERE call_session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS call_attempts_call_leg_id_idx ON call_attempts (call_leg_id)
  WHERE call_leg_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS call_attempts_agent_user_id_created_at_idx ON call_attempts (agent_user_id, created_at)
  WHERE agent_user_id IS NOT NULL;

-- Raw carrier webhooks, written in batches. event_id (Telnyx data.id) de-duplicates
-- redeliveries. call_attempt_id is NULL for agent legs and for events that arrive before
-- their attempt is known. handling records what the leg state machine did with it
-- (NULL = not processed yet).
CREATE TABLE IF NOT EXISTS call_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id text NOT NULL UNIQUE,
  event_type text NOT NULL CHECK (event_type ~ '^[a-z][a-z0-9_.]*$'),
  call_control_id text,
  call_attempt_id bigint REFERENCES call_attempts(id) ON DELETE SET NULL,
  occurred_at timestamptz NOT NULL,         -- carrier clock
  received_at timestamptz NOT NULL,         -- our clock, at the HTTP request
  delivery_attempt integer CHECK (delivery_attempt >= 1),  -- meta.attempt
  handling text CHECK (handling IN ('applied', 'ignored', 'illegal_transition', 'unmatched')),
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS call_events_call_attempt_id_occurred_at_idx
  ON call_events (call_attempt_id, occurred_at) WHERE call_attempt_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS call_events_call_control_id_idx ON call_events (call_control_id)
  WHERE call_control_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS call_events_received_at_idx ON call_events USING brin (received_at);

-- Every agent state transition, for time-in-state reports. at = when it happened in the
-- daemon (rows may be flushed later).
CREATE TABLE IF NOT EXISTS agent_state_changes (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  agent_session_id bigint NOT NULL REFERENCES agent_sessions(id) ON DELETE CASCADE,
  user_id bigint NOT NULL REFERENCES users(id) ON DELETE RESTRICT,
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE RESTRICT,
  from_state agent_state,                   -- NULL for the first row of a session
  to_state agent_state NOT NULL,
  reason text,                              -- pause reason code or cause of the change
  call_attempt_id bigint REFERENCES call_attempts(id) ON DELETE SET NULL,
  at timestamptz NOT NULL DEFAULT now(),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS agent_state_changes_agent_session_id_at_idx ON agent_state_changes (agent_session_id, at);
CREATE INDEX IF NOT EXISTS agent_state_changes_user_id_at_idx ON agent_state_changes (user_id, at);
CREATE INDEX IF NOT EXISTS agent_state_changes_campaign_id_at_idx ON agent_state_changes (campaign_id, at);

-- Personal callbacks go to assigned_user_id; campaign callbacks to whoever is free.
-- One scheduled callback per campaign and contact (a retry of the same request is a no-op).
CREATE TABLE IF NOT EXISTS callbacks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
  contact_id bigint NOT NULL REFERENCES contacts(id) ON DELETE RESTRICT,
  kind callback_kind NOT NULL,
  assigned_user_id bigint REFERENCES users(id) ON DELETE SET NULL,
  due_at timestamptz NOT NULL,
  status callback_status NOT NULL DEFAULT 'scheduled',
  notes text NOT NULL DEFAULT '',
  source_attempt_id bigint REFERENCES call_attempts(id) ON DELETE SET NULL,
  completed_attempt_id bigint REFERENCES call_attempts(id) ON DELETE SET NULL,
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,
  closed_at timestamptz,                    -- when it left 'scheduled'
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- a personal callback whose agent was deleted falls back to the campaign (app sets kind)
  CHECK (kind <> 'personal' OR assigned_user_id IS NOT NULL),
  CHECK ((status = 'scheduled') = (closed_at IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS callbacks_campaign_id_contact_id_idx
  ON callbacks (campaign_id, contact_id) WHERE status = 'scheduled';
CREATE INDEX IF NOT EXISTS callbacks_campaign_id_due_at_idx ON callbacks (campaign_id, due_at)
  WHERE status = 'scheduled';
CREATE INDEX IF NOT EXISTS callbacks_assigned_user_id_due_at_idx ON callbacks (assigned_user_id, due_at)
  WHERE status = 'scheduled' AND assigned_user_id IS NOT NULL;

-- The agent's (or the dialer's) disposition of an attempt; committed before the agent is told
-- it was saved. disposition_code is a snapshot of dispositions.code at that moment.
CREATE TABLE IF NOT EXISTS attempt_dispositions (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  call_attempt_id bigint NOT NULL UNIQUE REFERENCES call_attempts(id) ON DELETE RESTRICT,
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE RESTRICT,
  contact_id bigint NOT NULL REFERENCES contacts(id) ON DELETE RESTRICT,
  disposition_id bigint NOT NULL REFERENCES dispositions(id) ON DELETE RESTRICT,
  disposition_code text NOT NULL CHECK (disposition_code ~ '^[a-z][a-z0-9_]{0,62}$'),
  agent_user_id bigint REFERENCES users(id) ON DELETE SET NULL,   -- NULL = set by the dialer
  form_answers jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(form_answers) = 'object'),
  notes text NOT NULL DEFAULT '',
  callback_id bigint REFERENCES callbacks(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS attempt_dispositions_campaign_id_disposition_code_idx
  ON attempt_dispositions (campaign_id, disposition_code);
CREATE INDEX IF NOT EXISTS attempt_dispositions_contact_id_idx ON attempt_dispositions (contact_id);
CREATE INDEX IF NOT EXISTS attempt_dispositions_agent_user_id_created_at_idx
  ON attempt_dispositions (agent_user_id, created_at) WHERE agent_user_id IS NOT NULL;

-- =============================================================================================
-- Leads and quality assurance
-- =============================================================================================

-- Why QA rejects a lead: a catalogue (a rejection names one), extended by admins.
CREATE TABLE IF NOT EXISTS qa_rejection_reasons (
  code text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,39}$'),
  label text NOT NULL CHECK (btrim(label) <> ''),
  active boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO qa_rejection_reasons (code, label) VALUES
  ('recording_missing', 'No recording, or the recording does not show the conversation'),
  ('job_title_mismatch', 'The job title does not fit the order'),
  ('company_size_mismatch', 'The company size does not fit the order'),
  ('industry_mismatch', 'The industry does not fit the order'),
  ('geography_mismatch', 'The location does not fit the order'),
  ('no_consent', 'Consent was not given or not recorded'),
  ('wrong_contact', 'Not the person on record, or the details are wrong'),
  ('not_interested', 'The contact did not show interest'),
  ('duplicate', 'A lead for this person already exists'),
  ('other', 'Other (explained in the notes)')
ON CONFLICT (code) DO NOTHING;

-- What QA confirms before approving a campaign's leads (e.g. recording reviewed, job title fits).
CREATE TABLE IF NOT EXISTS qa_checklist_items (
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
  key text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,39}$'),
  label text NOT NULL CHECK (btrim(label) <> ''),
  position integer NOT NULL,
  PRIMARY KEY (campaign_id, key)
);

-- A qualified contact from a positive disposition or entered through the API. client_organisation_id is
-- copied from the campaign; the client a lead is sold to is its order's (campaign_order_id, set by allocation). One lead per contact per
-- campaign; a lead returned and re-qualified updates this row (history is in lead_qa_events). A lead under
-- review is claimed by one analyst (claimed_by) until claimed_until: the QA queue never hands it to another.
CREATE TABLE IF NOT EXISTS leads (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE RESTRICT,
  contact_id bigint NOT NULL REFERENCES contacts(id) ON DELETE RESTRICT,
  account_id bigint REFERENCES accounts(id) ON DELETE SET NULL,
  call_attempt_id bigint UNIQUE REFERENCES call_attempts(id) ON DELETE RESTRICT,
  client_organisation_id bigint REFERENCES client_organisations(id) ON DELETE RESTRICT,
  campaign_order_id bigint REFERENCES campaign_orders(id) ON DELETE RESTRICT,
  agent_user_id bigint REFERENCES users(id) ON DELETE SET NULL,
  form_answers jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(form_answers) = 'object'),
  status lead_status NOT NULL DEFAULT 'new',
  status_changed_at timestamptz NOT NULL DEFAULT now(),
  status_reason text,                       -- rejection or return reason
  qa_analyst_id bigint REFERENCES users(id) ON DELETE SET NULL,
  delivered_at timestamptz,
  recording_url text CHECK (recording_url IS NULL OR recording_url ~ '^https?://'),
  notes text NOT NULL DEFAULT '',
  claimed_by bigint REFERENCES users(id) ON DELETE SET NULL,
  claimed_until timestamptz,
  rejection_reason text REFERENCES qa_rejection_reasons(code),
  replacement_owed boolean NOT NULL DEFAULT false,
  published_at timestamptz,
  allocated_at timestamptz,                 -- when campaign_order_id was set (delivery pace counts these)
  returned_at timestamptz,
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,   -- NULL: from a disposition
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (campaign_id, contact_id),
  CHECK (status NOT IN ('rejected', 'returned') OR status_reason IS NOT NULL),
  CHECK ((claimed_by IS NULL) = (claimed_until IS NULL))
);
CREATE INDEX IF NOT EXISTS leads_status_created_at_idx ON leads (status, created_at);   -- QA queue
CREATE INDEX IF NOT EXISTS leads_client_organisation_id_status_idx ON leads (client_organisation_id, status)
  WHERE client_organisation_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS leads_campaign_order_id_status_idx ON leads (campaign_order_id, status)
  WHERE campaign_order_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS leads_campaign_id_account_id_idx ON leads (campaign_id, account_id);  -- account caps
CREATE INDEX IF NOT EXISTS leads_contact_id_idx ON leads (contact_id);  -- cross-campaign dedupe

-- Leads pushed to a client's webhook: one row per lead and order, written with the allocation (so a crash
-- between allocation and the push loses nothing), retried with back-off until the client answers 2xx.
CREATE TABLE IF NOT EXISTS lead_deliveries (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lead_id bigint NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  order_id bigint NOT NULL REFERENCES campaign_orders(id) ON DELETE CASCADE,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  delivered_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (lead_id, order_id)
);
CREATE INDEX IF NOT EXISTS lead_deliveries_due_idx ON lead_deliveries (next_attempt_at) WHERE status = 'pending';

-- Append-only QA trail: every status change of a lead, with who and why.
CREATE TABLE IF NOT EXISTS lead_qa_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lead_id bigint NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  analyst_id bigint REFERENCES users(id) ON DELETE SET NULL,
  from_status lead_status,                  -- NULL for the creation event
  to_status lead_status NOT NULL,
  reason text,
  detail jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object'),  -- scorecard etc.
  at timestamptz NOT NULL DEFAULT now(),
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (from_status IS DISTINCT FROM to_status)
);
CREATE INDEX IF NOT EXISTS lead_qa_events_lead_id_at_idx ON lead_qa_events (lead_id, at);
CREATE INDEX IF NOT EXISTS lead_qa_events_analyst_id_at_idx ON lead_qa_events (analyst_id, at)
  WHERE analyst_id IS NOT NULL;

-- =============================================================================================
-- Email sending: per-recipient ledger and provider/tracking events
-- =============================================================================================

-- The send ledger: one row per campaign, contact and variant, created at snapshot time. A
-- crash loses nothing and resends at most the rows left in 'sending' (ambiguous: the provider
-- may have accepted them). idempotency_key is deterministic (also used in Message-ID) so a
-- re-run of the snapshot cannot create a second row. to_email and sender_profile_id are
-- snapshots: the address actually used, and the sender for daily-cap/warmup counting.
CREATE TABLE IF NOT EXISTS email_messages (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  campaign_id bigint NOT NULL REFERENCES campaigns(id) ON DELETE RESTRICT,
  contact_id bigint NOT NULL REFERENCES contacts(id) ON DELETE RESTRICT,
  variant_id bigint NOT NULL REFERENCES email_variants(id) ON DELETE RESTRICT,
  idempotency_key text NOT NULL UNIQUE,
  status email_message_status NOT NULL DEFAULT 'queued',
  to_email email_address NOT NULL,
  sender_profile_id bigint REFERENCES sender_profiles(id) ON DELETE RESTRICT,
  provider email_provider,
  provider_message_id text,
  attempt_count integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
  next_attempt_at timestamptz,              -- back-off after a temporary failure
  status_reason text,                       -- why suppressed / skipped
  last_error text,
  rendered_at timestamptz,
  sending_at timestamptz,
  sent_at timestamptz,
  failed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),   -- queued at
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (campaign_id, contact_id, variant_id),
  CHECK (status <> 'sent' OR sent_at IS NOT NULL),
  CHECK (status NOT IN ('suppressed', 'skipped') OR status_reason IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS email_messages_campaign_id_status_idx ON email_messages (campaign_id, status);
-- The send pipeline and crash recovery only look at unfinished rows.
CREATE INDEX IF NOT EXISTS email_messages_campaign_id_pending_idx ON email_messages (campaign_id, id)
  WHERE status IN ('queued', 'rendered', 'sending');
CREATE INDEX IF NOT EXISTS email_messages_provider_provider_message_id_idx
  ON email_messages (provider, provider_message_id) WHERE provider_message_id IS NOT NULL;
-- Frequency caps per contact and daily caps per sender.
CREATE INDEX IF NOT EXISTS email_messages_contact_id_sent_at_idx ON email_messages (contact_id, sent_at)
  WHERE sent_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS email_messages_sender_profile_id_sent_at_idx ON email_messages (sender_profile_id, sent_at)
  WHERE sent_at IS NOT NULL;

-- Delivery and engagement events from provider webhooks (provider set, de-duplicated by
-- provider_event_id) or from our own tracking/unsubscribe endpoints (provider NULL).
-- campaign_id is copied for reporting; email_message_id is NULL when the event cannot be matched.
CREATE TABLE IF NOT EXISTS email_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email_message_id bigint REFERENCES email_messages(id) ON DELETE SET NULL,
  campaign_id bigint REFERENCES campaigns(id) ON DELETE SET NULL,
  event_type email_event_type NOT NULL,
  provider email_provider,
  provider_event_id text,
  recipient text,
  url text,                                 -- clicked link
  occurred_at timestamptz NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  payload jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (provider, provider_event_id),
  CHECK (provider_event_id IS NULL OR provider IS NOT NULL),
  CHECK (event_type <> 'click' OR url IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS email_events_email_message_id_event_type_idx
  ON email_events (email_message_id, event_type) WHERE email_message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS email_events_campaign_id_event_type_occurred_at_idx
  ON email_events (campaign_id, event_type, occurred_at) WHERE campaign_id IS NOT NULL;
-- An address's soft bounces of the last 30 days (suppressed after email.soft_bounce_limit of them).
CREATE INDEX IF NOT EXISTS email_events_recipient_occurred_at_idx
  ON email_events (recipient, occurred_at) WHERE event_type = 'bounce_soft';

-- =============================================================================================
-- Upgrades: bring a database created by an older schema version to this one. Each block checks
-- the catalogue first, so re-applying this file takes no lock when there is nothing to change.
-- =============================================================================================

-- Version 2: the faster dns_domain check (ALTER DOMAIN re-checks stored values once).
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'dns_domain_shape'
                   AND contypid = 'dns_domain'::regtype) THEN
    EXECUTE (SELECT string_agg(format('ALTER DOMAIN dns_domain DROP CONSTRAINT %I', conname), '; ')
               FROM pg_constraint WHERE contypid = 'dns_domain'::regtype);
    ALTER DOMAIN dns_domain ADD CONSTRAINT dns_domain_shape CHECK (
      length(VALUE) <= 253 AND VALUE ~ '^[a-z0-9-]+(\.[a-z0-9-]+)+$'
      AND VALUE !~ '(^|\.)-|-(\.|$)|[^.]{64}' AND VALUE ~ '[a-z0-9-]{2}$');
  END IF;
END $$;

-- Version 2: provenance columns of accounts and contacts without foreign keys (see accounts).
DO $$ DECLARE fk record; BEGIN
  FOR fk IN SELECT conrelid::regclass AS tbl, conname FROM pg_constraint
             WHERE contype = 'f' AND confrelid = 'record_sources'::regclass
               AND conrelid IN ('accounts'::regclass, 'contacts'::regclass) LOOP
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tbl, fk.conname);
  END LOOP;
END $$;

-- Version 3: the lead QA workflow. The statuses take the workflow's names ('pending_qa' is 'new',
-- 'delivered' is 'published', delivery to clients being per order) and gain 'under_review'; leads gain
-- the QA columns (the catalogue and checklist tables above are created by their own statements).
DO $$ DECLARE c record; BEGIN
  IF EXISTS (SELECT 1 FROM pg_enum WHERE enumtypid = 'lead_status'::regtype AND enumlabel = 'pending_qa') THEN
    ALTER TYPE lead_status RENAME VALUE 'pending_qa' TO 'new';
    ALTER TYPE lead_status RENAME VALUE 'delivered' TO 'published';
    ALTER TABLE leads ALTER COLUMN status SET DEFAULT 'new';
    FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = 'leads'::regclass AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%delivered_at%' LOOP
      EXECUTE format('ALTER TABLE leads DROP CONSTRAINT %I', c.conname);
    END LOOP;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_enum WHERE enumtypid = 'lead_status'::regtype AND enumlabel = 'under_review') THEN
    ALTER TYPE lead_status ADD VALUE 'under_review' AFTER 'new';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'leads' AND column_name = 'claimed_by') THEN
    ALTER TABLE leads
      ADD COLUMN recording_url text CHECK (recording_url IS NULL OR recording_url ~ '^https?://'),
      ADD COLUMN notes text NOT NULL DEFAULT '',
      ADD COLUMN claimed_by bigint REFERENCES users(id) ON DELETE SET NULL,
      ADD COLUMN claimed_until timestamptz,
      ADD COLUMN rejection_reason text REFERENCES qa_rejection_reasons(code),
      ADD COLUMN replacement_owed boolean NOT NULL DEFAULT false,
      ADD COLUMN published_at timestamptz,
      ADD COLUMN allocated_at timestamptz,
      ADD COLUMN returned_at timestamptz,
      ADD COLUMN created_by bigint REFERENCES users(id) ON DELETE SET NULL,
      ADD CHECK ((claimed_by IS NULL) = (claimed_until IS NULL));
  END IF;
END $$;

-- Version 3: orders gain their terms and serve several campaigns (order_campaigns, created above; version
-- 2's one campaign_id is copied there).
DO $$ DECLARE c record; BEGIN
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'campaign_orders'
                   AND column_name = 'weekly_pace') THEN
    FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = 'campaign_orders'::regclass AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%campaign_id IS NOT NULL%' LOOP
      EXECUTE format('ALTER TABLE campaign_orders DROP CONSTRAINT %I', c.conname);
    END LOOP;
    ALTER TABLE campaign_orders
      ADD COLUMN weekly_pace integer CHECK (weekly_pace > 0),
      ADD COLUMN price_per_lead numeric(12,2) CHECK (price_per_lead >= 0),
      ADD COLUMN currency text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
      ADD COLUMN over_delivery_pct integer NOT NULL DEFAULT 0 CHECK (over_delivery_pct BETWEEN 0 AND 100),
      ADD COLUMN returns_window_days integer NOT NULL DEFAULT 14 CHECK (returns_window_days BETWEEN 0 AND 365),
      ADD COLUMN dedupe_scope text NOT NULL DEFAULT 'order' CHECK (dedupe_scope IN ('order', 'client')),
      ADD COLUMN webhook_url text CHECK (webhook_url IS NULL OR webhook_url ~ '^https?://'),
      ADD COLUMN webhook_secret_encrypted bytea;
    INSERT INTO order_campaigns (order_id, campaign_id)
      SELECT id, campaign_id FROM campaign_orders WHERE campaign_id IS NOT NULL ON CONFLICT DO NOTHING;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'call_attempts'
                   AND column_name = 'recording_file') THEN
    ALTER TABLE call_attempts ADD COLUMN recording_file text, ADD COLUMN recording_saved_at timestamptz;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'campaign_members'
                   AND column_name = 'held_for_orders') THEN
    ALTER TABLE campaign_members ADD COLUMN held_for_orders boolean NOT NULL DEFAULT false;
  END IF;
END $$;

-- The QA queue by campaign (POST /api/qa/next?campaign_id=): after the upgrade above, which names 'new'.
CREATE INDEX IF NOT EXISTS leads_new_campaign_id_created_at_idx ON leads (campaign_id, created_at, id)
  WHERE status = 'new';
