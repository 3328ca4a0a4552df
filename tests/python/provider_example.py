"""The provider documentation's example request, sent with Python's requests.

Field names and types exactly as documented (Custom SMTP example); only the base URL,
the key and the server names/ports point at the local test servers. Exits non-zero
unless the account is created and becomes ACTIVE.
"""
import os
import sys
import time

import requests

base_url = os.environ["COLDSEND_BASE_URL"]
api_key = os.environ["COLDSEND_API_KEY"]
host = os.environ["MAIL_HOST"]
user = os.environ["MAIL_USER"]
password = os.environ["MAIL_PASSWORD"]

response = requests.post(
    f"{base_url}/api/public/v1/sender-accounts",
    headers={"X-API-Key": api_key},
    json={
        "email_address": user,
        "display_name": "Outreach Team",
        "inbox_type": "CUSTOM_SMTP",
        "daily_limit": 100,
        "smtp_host": host,
        "smtp_port": int(os.environ["SMTP_PORT"]),
        "smtp_username": user,
        "smtp_password": password,
        "smtp_use_tls": True,
        "imap_host": host,
        "imap_port": int(os.environ["IMAP_PORT"]),
        "imap_username": user,
        "imap_password": password,
        "imap_use_ssl": True
    }
)
print("POST", response.status_code, response.text)
if not response.ok:
    sys.exit(f"registration failed: {response.status_code}")
account = response.json()
assert "smtp_password" not in account and "imap_password" not in account, account

deadline = time.time() + 30
while account["status"] == "PENDING_VALIDATION" and time.time() < deadline:
    time.sleep(0.2)
    account = requests.get(
        f"{base_url}/api/public/v1/sender-accounts/{account['id']}",
        headers={"X-API-Key": api_key},
    ).json()
print("final", account)
if account["status"] != "ACTIVE":
    sys.exit(f"account is {account['status']}, not ACTIVE")
print("ACTIVE")
