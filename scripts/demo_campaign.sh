#!/usr/bin/env bash
# A demo telephony campaign on a running daemon, through the API: the contacts of a static list (import some
# first: `pivotal import contacts FILE --list Demo`), a script, a form, the default outcomes, an all-week calling
# window, predictive dialling; then started. Prints the campaign's id.
#   usage: echo "$ADMIN_PASSWORD" | scripts/demo_campaign.sh [URL] [LIST_NAME]
set -euo pipefail
url=${1:-http://127.0.0.1:8080}
list_name=${2:-Demo}
read -r password
json() { python3 -c "import json,sys; print(eval(sys.argv[1], {}, {'d': json.load(sys.stdin)}))" "$1"; }
call() { curl -sS --fail-with-body -H "Authorization: Bearer $token" -H 'content-type: application/json' "$@"; }
token=$(curl -sS --fail-with-body "$url/api/auth/login" -H 'content-type: application/json' \
  -d "{\"email\": \"admin@pivotal.local\", \"password\": \"$password\"}" | json "d['access_token']")
list=$(call "$url/api/lists?limit=200" | json "[l['id'] for l in d['items'] if l['name'] == '$list_name'][0]")
script=$(call "$url/api/scripts" -d '{"name": "Demo opener", "body": "Hi {{contact.first_name}}, this is Acme."}' | json "d['id']")
form=$(call "$url/api/forms" -d '{"name": "Demo form", "fields": [{"key": "budget", "label": "Budget", "type": "integer", "required": true, "min": 1}]}' | json "d['id']")
outcomes=$(call "$url/api/disposition-catalogues" | json "[c['id'] for c in d['items'] if c['code'] == 'default'][0]")
campaign=$(call "$url/api/campaigns" -d "{\"name\": \"Demo $(date +%H%M%S)\", \"dial_mode\": \"predictive\", \"script_id\": $script,
  \"qualification_form_id\": $form, \"disposition_catalogue_id\": $outcomes, \"caller_id_e164\": \"+12125550199\",
  \"abandon_message\": \"Acme calling. To opt out, press 9.\"}" | json "d['id']")
call -X PUT "$url/api/campaigns/$campaign/audience" -d "{\"rules\": [{\"mode\": \"include\", \"list_id\": $list}]}" > /dev/null
week='["00:00", "24:00"]'
call -X PUT "$url/api/campaigns/$campaign/compliance" -d "{\"calling_window\": {\"mon\": [$week], \"tue\": [$week],
  \"wed\": [$week], \"thu\": [$week], \"fri\": [$week], \"sat\": [$week], \"sun\": [$week]}}" > /dev/null
call -X POST "$url/api/campaigns/$campaign/actions/start" > /dev/null
echo "$campaign"
