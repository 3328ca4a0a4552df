"""The minimal reference poll for the IMAP benchmark: connect + TLS + LOGIN, STATUS,
EXAMINE, UID FETCH of the UIDs after LAST (BODY.PEEK[]), LOGOUT. Prints
{"poll_ms": …, "fetch_ms": …, "fetched": n} as JSON."""
import imaplib
import json
import re
import ssl
import sys
import time

host, port, ca, user, password, folder, last = sys.argv[1:8]
t0 = time.perf_counter()
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
m.login(user, password)
m.status(folder, "(UIDNEXT UIDVALIDITY)")
m.select(folder, readonly=True)  # EXAMINE
t1 = time.perf_counter()
typ, data = m.uid("FETCH", f"{int(last) + 1}:*", "(UID BODY.PEEK[])")
t2 = time.perf_counter()
fetched = sum(1 for d in data if isinstance(d, tuple) and int(re.search(rb"UID (\d+)", d[0]).group(1)) > int(last))
m.logout()
t3 = time.perf_counter()
print(json.dumps({"poll_ms": (t3 - t0) * 1000, "fetch_ms": (t2 - t1) * 1000, "fetched": fetched}))
