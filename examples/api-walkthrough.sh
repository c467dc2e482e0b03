#!/usr/bin/env bash
# A walk through Herald's API against the demo (`cargo xtask demo` in another terminal).
# Run with: bash examples/api-walkthrough.sh
set -euo pipefail
BASE=${HERALD_URL:-http://127.0.0.1:8080}
AUTH="Authorization: Bearer ${HERALD_API_KEY:-demo-api-key}"
JSON="Content-Type: application/json"
show() { echo; echo "## $1"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

show "Send a message (202 Accepted)"
MSG=$(curl -s -X POST "$BASE/api/v1/sms/send" -H "$AUTH" -H "$JSON" \
  -d '{"to_number": "+14155552671", "message": "Your order is ready!", "customer_id": 123}')
echo "$MSG"
ID=$(echo "$MSG" | field "['id']")

show "Create a template and send with it"
TPL=$(curl -s -X POST "$BASE/api/v1/sms/templates" -H "$AUTH" -H "$JSON" \
  -d "{\"name\": \"order_ready_$RANDOM\", \"template_body\": \"Hi {{customer_name}}, order #{{order_number}} is ready!\"}")
echo "$TPL"
TPL_ID=$(echo "$TPL" | field "['id']")
curl -s -X POST "$BASE/api/v1/sms/send" -H "$AUTH" -H "$JSON" -H "Idempotency-Key: walkthrough-$RANDOM" \
  -d "{\"to_number\": \"+14155552671\", \"template_id\": \"$TPL_ID\", \"template_variables\": {\"customer_name\": \"Ann\", \"order_number\": 42}}"
echo

show "A missing template variable is a 422 naming it"
curl -s -X POST "$BASE/api/v1/sms/send" -H "$AUTH" -H "$JSON" \
  -d "{\"to_number\": \"+14155552671\", \"template_id\": \"$TPL_ID\", \"template_variables\": {}}"
echo

show "Send a default template by its name; preview it first (missing variables are reported)"
curl -s -X POST "$BASE/api/v1/sms/templates/order_ready/preview" -H "$AUTH" -H "$JSON" \
  -d '{"customer_name": "Ann", "order_number": "ORD-123"}'
echo
curl -s -X POST "$BASE/api/v1/sms/send" -H "$AUTH" -H "$JSON" \
  -d '{"to_number": "+14155552671", "template_id": "order_ready", "template_variables": {"customer_name": "Ann", "order_number": "ORD-123", "restaurant_name": "Aura"}}'
echo

show "A new version of the template, and a roll-back"
curl -s -X PATCH "$BASE/api/v1/sms/templates/$TPL_ID" -H "$AUTH" -H "$JSON" \
  -d '{"template_body": "Hi {{customer_name}}, order #{{order_number}} is ready{{#eta}} in {{eta}} minutes{{/eta}}!"}' | field "['version']"
curl -s -X POST "$BASE/api/v1/sms/templates/$TPL_ID/versions/1/activate" -H "$AUTH" | field "['version']"

show "Follow the first message: queued → sending → sent → delivered"
sleep 2
curl -s "$BASE/api/v1/sms/messages/$ID" -H "$AUTH" | field "['status']"
curl -s "$BASE/api/v1/sms/messages/$ID" -H "$AUTH" | python3 -c \
  "import json,sys; print(' → '.join(e['status'] for e in json.load(sys.stdin)['history']))"

show "List delivered messages"
curl -s "$BASE/api/v1/sms/messages?status=delivered&limit=5" -H "$AUTH" | field "['items'].__len__()"

show "Bad input gets one error shape"
curl -s -X POST "$BASE/api/v1/sms/send" -H "$AUTH" -H "$JSON" -d '{"to_number": "555-1234", "message": "x"}'
echo
