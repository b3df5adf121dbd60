"""The set-based SQL that merges a staged import into accounts and contacts (one transaction).

Rules (also in the README):
- Account identity: normalised domain, else the company name (case and spacing folded). A name-only row
  matches the oldest live account with that name.
- Contact identity: lower(e-mail), else the phone number within the account.
- Several rows of one file with the same identity merge: for each field the last non-empty value wins.
- An existing record takes the file's non-empty values; empty cells never erase data. A record whose
  values would not change is not written at all, so importing a file twice changes nothing.
"""

from __future__ import annotations


def _last(column: str, alias: str | None = None) -> str:
    return f"(array_agg({column} ORDER BY line DESC) FILTER (WHERE {column} IS NOT NULL))[1] AS {alias or column}"


STAGING_TABLE = """
CREATE TEMP TABLE import_staging (
    line integer NOT NULL, email text, email_original text, email_invalid text, phone text, phone_ext text,
    phone_original text, phone_country text, phone_line_type text, phone_invalid text, first_name text,
    last_name text, job_title text, country text, timezone text, custom jsonb, acc_key text, acc_name text,
    acc_domain text, acc_registrable text, acc_phone text, acc_country text, acc_industry text,
    acc_employees integer, acc_custom jsonb
);
CREATE TEMP TABLE import_staged_rejects (
    line integer NOT NULL, column_name text, value text, reason text NOT NULL
);
"""

DROP_STAGING = """
DROP TABLE IF EXISTS import_staging, import_staged_rejects, import_accounts, import_rows, import_repeated,
    import_repeated_rows, import_contacts
"""

#: How a company name is folded into its identity: in SQL only, so imported rows and existing accounts are
#: folded by the same code (Python and PostgreSQL disagree on some case mappings).
FOLD_NAME = "regexp_replace(lower(btrim({})), '\\s+', ' ', 'g')"

ACCOUNTS = f"""
UPDATE import_staging SET acc_key = 'n:' || {FOLD_NAME.format("acc_name")}
 WHERE acc_key IS NULL AND acc_name IS NOT NULL;

CREATE TEMP TABLE import_accounts AS
SELECT acc_key,
       {_last("acc_name", "name")}, {_last("acc_domain", "domain")}, {_last("acc_registrable", "registrable")},
       {_last("acc_phone", "phone")}, {_last("acc_country", "country")}, {_last("acc_industry", "industry")},
       {_last("acc_employees", "employees")}, {_last("acc_custom", "custom")},
       NULL::bigint AS account_id, false AS is_new
  FROM import_staging WHERE acc_key IS NOT NULL GROUP BY acc_key;

UPDATE import_accounts ia SET account_id = a.id
  FROM accounts a
 WHERE ia.domain IS NOT NULL AND a.domain = ia.domain AND a.deleted_at IS NULL;

UPDATE import_accounts ia SET account_id = m.id
  FROM (SELECT DISTINCT ON (folded) id, folded
          FROM (SELECT id, {FOLD_NAME.format("name")} AS folded FROM accounts WHERE deleted_at IS NULL) named
         ORDER BY folded, id) m
 WHERE ia.domain IS NULL AND m.folded = substr(ia.acc_key, 3);
"""

_ACCOUNT_NEW = {
    "name": "coalesce(ia.name, a.name)",
    "registrable_domain": "coalesce(ia.registrable, a.registrable_domain)",
    "main_line_e164": "coalesce(ia.phone, a.main_line_e164)",
    "office_country": "coalesce(ia.country, a.office_country)",
    "industry": "coalesce(ia.industry, a.industry)",
    "employee_count": "coalesce(ia.employees, a.employee_count)",
    "custom_fields": "a.custom_fields || coalesce(ia.custom, '{}')",
}


def _field_sources(new: dict[str, str], alias: str) -> str:
    """jsonb of {column: $1} for the columns whose value changes: per-field provenance."""
    pairs = ", ".join(
        f"'{column}', CASE WHEN ({expression}) IS DISTINCT FROM {alias}.{column} THEN $1::bigint END"
        for column, expression in new.items()
    )
    return f"{alias}.field_sources || jsonb_strip_nulls(jsonb_build_object({pairs}))"


def _update_changed(table: str, alias: str, staged: str, match: str, new: dict[str, str]) -> str:
    """UPDATE the records whose values would change (never the others) and count them."""
    return f"""
WITH changed AS (
  UPDATE {table} {alias}
     SET {", ".join(f"{column} = {expression}" for column, expression in new.items())},
         field_sources = {_field_sources(new, alias)},
         last_source_id = $1, updated_at = now()
    FROM {staged}
   WHERE {match}
     AND ({", ".join(f"{alias}.{column}" for column in new)}) IS DISTINCT FROM ({", ".join(new.values())})
  RETURNING 1)
SELECT count(*) FROM changed
"""


UPDATE_ACCOUNTS = _update_changed("accounts", "a", "import_accounts ia", "ia.account_id = a.id", _ACCOUNT_NEW)

# Ids are drawn first so each new account's id is known to the rows that name it.
ASSIGN_ACCOUNT_IDS = """
UPDATE import_accounts SET is_new = true, account_id = nextval(pg_get_serial_sequence('accounts', 'id'))
 WHERE account_id IS NULL
"""

INSERT_ACCOUNTS = """
WITH inserted AS (
  INSERT INTO accounts (id, name, domain, registrable_domain, main_line_e164, office_country, industry,
                        employee_count, custom_fields, source_id, last_source_id)
  OVERRIDING SYSTEM VALUE
  SELECT ia.account_id, coalesce(ia.name, ia.domain), ia.domain, ia.registrable, ia.phone, ia.country,
         ia.industry, ia.employees, coalesce(ia.custom, '{}'), $1, $1
    FROM import_accounts ia WHERE ia.is_new ORDER BY ia.account_id
  RETURNING id)
SELECT count(*) FROM inserted
"""

_PHONE_UNIT = "phone, phone_ext, phone_original, phone_country, phone_line_type, phone_invalid"
_EMAIL_UNIT = "email, email_original, email_invalid"

_CONTACT_COLUMNS = (
    f"account_id, first_name, last_name, job_title, country, timezone, custom, {_PHONE_UNIT}, {_EMAIL_UNIT}"
)

# Most identities occur once in a file: their row is the contact as it is. Only the rows of repeated
# identities are aggregated (ordered aggregates cost a sort per group and field, ~10x a plain scan).
# For those, a phone (or e-mail) and its original text, country, line type and reason come from one row:
# the last one with a valid value, else the last one with any value. Other fields: the last non-empty value.
CONTACTS = f"""
CREATE TEMP TABLE import_rows AS
SELECT s.*, ia.account_id,
       CASE WHEN s.email IS NOT NULL THEN 'e:' || lower(s.email)
            ELSE 'p:' || coalesce(ia.account_id::text, '') || ':' || s.phone END AS ckey
  FROM import_staging s LEFT JOIN import_accounts ia USING (acc_key);

CREATE TEMP TABLE import_repeated AS
SELECT ckey FROM import_rows GROUP BY ckey HAVING count(*) > 1;

CREATE TEMP TABLE import_repeated_rows AS
SELECT r.* FROM import_rows r WHERE EXISTS (SELECT FROM import_repeated d WHERE d.ckey = r.ckey);

CREATE TEMP TABLE import_contacts AS
SELECT ckey, {_CONTACT_COLUMNS}, NULL::bigint AS contact_id, false AS existed
  FROM import_rows r WHERE NOT EXISTS (SELECT FROM import_repeated d WHERE d.ckey = r.ckey)
UNION ALL
SELECT g.ckey, g.account_id, g.first_name, g.last_name, g.job_title, g.country, g.timezone, g.custom,
       p.phone, p.phone_ext, p.phone_original, p.phone_country, p.phone_line_type, p.phone_invalid,
       e.email, e.email_original, e.email_invalid, NULL::bigint, false
  FROM (SELECT ckey, {_last("account_id")}, {_last("first_name")}, {_last("last_name")}, {_last("job_title")},
               {_last("country")}, {_last("timezone")}, {_last("custom")}
          FROM import_repeated_rows GROUP BY ckey) g
  LEFT JOIN (SELECT DISTINCT ON (ckey) ckey, {_PHONE_UNIT} FROM import_repeated_rows
              WHERE phone_original IS NOT NULL ORDER BY ckey, phone IS NOT NULL DESC, line DESC) p USING (ckey)
  LEFT JOIN (SELECT DISTINCT ON (ckey) ckey, {_EMAIL_UNIT} FROM import_repeated_rows
              WHERE email_original IS NOT NULL ORDER BY ckey, email IS NOT NULL DESC, line DESC) e USING (ckey);

UPDATE import_contacts ic SET contact_id = c.id, existed = true
  FROM contacts c
 WHERE ic.email IS NOT NULL AND lower(c.email) = lower(ic.email) AND c.deleted_at IS NULL;

-- The phone identifies a contact only when there is no e-mail: on either side.
UPDATE import_contacts ic SET contact_id = m.id, existed = true
  FROM (SELECT DISTINCT ON (account_id, phone_e164) id, account_id, phone_e164
          FROM contacts WHERE deleted_at IS NULL AND phone_e164 IS NOT NULL AND email IS NULL
         ORDER BY account_id, phone_e164, id) m
 WHERE ic.email IS NULL AND m.phone_e164 = ic.phone AND m.account_id IS NOT DISTINCT FROM ic.account_id;
"""

_CONTACT_FIELDS = (
    ("account_id", "account_id"),
    ("first_name", "first_name"),
    ("last_name", "last_name"),
    ("job_title", "job_title"),
    ("email", "email"),
    ("phone_e164", "phone"),
    ("country", "country"),
    ("timezone", "timezone"),
)
_NEW = {column: f"coalesce(ic.{staged}, c.{column})" for column, staged in _CONTACT_FIELDS}
# A new valid phone brings its extension, country and line type; an invalid one changes nothing of a valid
# number on record (its text and reason are kept only where the contact has no valid number).
_NEW |= {
    "phone_extension": "CASE WHEN ic.phone IS NOT NULL THEN ic.phone_ext ELSE c.phone_extension END",
    "phone_country": "CASE WHEN ic.phone IS NOT NULL THEN ic.phone_country ELSE c.phone_country END",
    "phone_line_type": "CASE WHEN ic.phone IS NOT NULL THEN ic.phone_line_type::phone_line_type"
    " ELSE c.phone_line_type END",
    "email_original": "CASE WHEN ic.email IS NOT NULL OR (c.email IS NULL AND ic.email_original IS NOT NULL)"
    " THEN ic.email_original ELSE c.email_original END",
    "email_invalid_reason": "CASE WHEN coalesce(ic.email, c.email) IS NULL"
    " THEN coalesce(ic.email_invalid, c.email_invalid_reason) END",
    "phone_original": "CASE WHEN ic.phone IS NOT NULL OR (c.phone_e164 IS NULL AND ic.phone_original IS NOT NULL)"
    " THEN ic.phone_original ELSE c.phone_original END",
    "phone_invalid_reason": "CASE WHEN coalesce(ic.phone, c.phone_e164) IS NULL"
    " THEN coalesce(ic.phone_invalid, c.phone_invalid_reason) END",
    "custom_fields": "c.custom_fields || coalesce(ic.custom, '{}')",
}

UPDATE_CONTACTS = _update_changed("contacts", "c", "import_contacts ic", "ic.contact_id = c.id", _NEW)

ASSIGN_CONTACT_IDS = """
UPDATE import_contacts SET contact_id = nextval(pg_get_serial_sequence('contacts', 'id'))
 WHERE contact_id IS NULL
"""

_INSERT_CONTACTS = """
WITH inserted AS (
  INSERT INTO contacts ({id_column}account_id, first_name, last_name, job_title, email, email_original,
                        email_invalid_reason, phone_e164, phone_extension, phone_original, phone_country,
                        phone_line_type, phone_invalid_reason, country, timezone, custom_fields, source_id,
                        last_source_id, field_sources)
  {overriding}SELECT {id_value}account_id, coalesce(first_name, ''), coalesce(last_name, ''), coalesce(job_title, ''),
         email, email_original, CASE WHEN email IS NULL THEN email_invalid END, phone, phone_ext,
         phone_original, phone_country, coalesce(phone_line_type, 'unknown')::phone_line_type,
         CASE WHEN phone IS NULL THEN phone_invalid END, country, timezone, coalesce(custom, '{{}}'), $1, $1,
         '{{}}'
    FROM import_contacts WHERE NOT existed
   ORDER BY ckey
  RETURNING id)
SELECT count(*) FROM inserted
"""

# With a target list the new contacts' ids are drawn first (the list needs them); without, the identity
# column numbers them and one pass over the staged contacts is saved.
INSERT_CONTACTS_WITH_IDS = _INSERT_CONTACTS.format(
    id_column="id, ", overriding="OVERRIDING SYSTEM VALUE\n  ", id_value="contact_id, "
)
INSERT_CONTACTS = _INSERT_CONTACTS.format(id_column="", overriding="", id_value="")

ADD_TO_LIST = """
INSERT INTO list_members (list_id, contact_id, source_id, added_by)
SELECT $1, contact_id, $2, $3 FROM import_contacts ORDER BY contact_id
ON CONFLICT DO NOTHING
"""

KEEP_REJECTS = """
INSERT INTO import_rejects (import_job_id, line_number, column_name, value, reason)
SELECT $1, line, column_name, value, reason FROM import_staged_rejects ORDER BY line
"""
