"""A producer in another language: enqueues commands with plain Redis commands.

Adds leads to a campaign and starts it through <prefix>:commands, sends three bad
commands, then waits for the bad ones to appear in <prefix>:commands:dead and prints
them as JSON lines ("DEAD {...}").
"""
import json
import os
import sys
import time

import redis

r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
prefix = os.environ["PREFIX"]
campaign = os.environ["CAMPAIGN_ID"]
commands = f"{prefix}:commands"

leads = [{"email": f"lead{i:02}@example.test", "first_name": f"Lead{i}"} for i in (1, 2, 3)]
r.xadd(commands, {"command": json.dumps({"v": 1, "type": "add_leads", "campaign_id": campaign,
                                         "leads": leads, "request_id": "py-1"})})
r.xadd(commands, {"command": json.dumps({"v": 1, "type": "start_campaign", "campaign_id": campaign,
                                         "request_id": "py-2"})})
# Malformed: not JSON, an unknown type, and an add_leads for a campaign that does not exist.
r.xadd(commands, {"command": "{this is not json"})
r.xadd(commands, {"command": json.dumps({"v": 1, "type": "launch_rockets"})})
r.xadd(commands, {"command": json.dumps({"v": 1, "type": "add_leads",
                                         "campaign_id": "00000000-0000-4000-8000-000000000000", "leads": []})})

deadline = time.time() + 30
while time.time() < deadline:
    dead = r.xrange(f"{prefix}:commands:dead")
    done = r.xrange(f"{prefix}:commands:done")
    if len(dead) >= 3 and len(done) >= 2:
        for _, fields in dead:
            print("DEAD " + json.dumps(fields))
        for _, fields in done:
            print("DONE " + json.dumps(fields))
        sys.exit(0)
    time.sleep(0.2)
sys.exit(f"timed out: dead={r.xrange(f'{prefix}:commands:dead')} done={r.xrange(f'{prefix}:commands:done')}")
