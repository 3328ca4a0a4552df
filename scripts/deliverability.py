#!/usr/bin/env python3
"""Compares `coldsend classify` with Sisimai over a corpus of messages.

Usage: scripts/deliverability.py CORPUS_DIR [--labels FILE.jsonl] [--live]
  CORPUS_DIR holds the messages (any file name); with --labels, Sisimai's verdicts come
  from a JSON-lines file (file, bounce, reason, hard); with --live (or no labels file),
  Sisimai runs here (Debian's libsisimai-perl). Prints detection rate, hard/soft agreement,
  reason agreement and every disagreement.
"""
import json
import os
import subprocess
import sys

args = sys.argv[1:]
if not args:
    sys.exit(__doc__)
corpus = args[0]
labels_file = args[args.index("--labels") + 1] if "--labels" in args else None
root = os.path.dirname(os.path.abspath(__file__))
coldsend = os.environ.get("COLDSEND_BIN", os.path.join(root, "..", "target", "debug", "coldsend"))

SISIMAI = r'''
use strict; use JSON::PP; use Sisimai;
my $j = JSON::PP->new->canonical;
for my $f (@ARGV) {
  my %o = (file => $f, bounce => 0);
  eval {
    my $v = Sisimai->make($f, delivered => 0, vacation => 1);
    if ($v && @$v) {
      my $d = $v->[0];
      if ($d->reason eq 'vacation') { $o{auto_reply} = 1 }
      elsif ($d->reason eq 'feedback') { $o{complaint} = 1 }
      else { %o = (%o, bounce => 1, reason => $d->reason, hard => ($d->softbounce == 0 ? 1 : 0), status => $d->deliverystatus) }
    }
    1;
  } or do { $o{error} = "$@" };
  print $j->encode(\%o), "\n";
}
'''

files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(corpus) for f in fs
               if not f.endswith((".json", ".jsonl", ".md")) and f != "LICENSE")
if labels_file:
    base = os.path.dirname(labels_file)
    labels = {os.path.normpath(os.path.join(base, r["file"])): r for r in map(json.loads, open(labels_file))}
else:
    # One Perl run per message: Sisimai exits on some malformed input.
    out = "".join(subprocess.run(["perl", "-e", SISIMAI, f], capture_output=True, text=True).stdout or
                  json.dumps({"file": f, "bounce": 0, "error": "sisimai failed"}) + "\n" for f in files)
    labels = {os.path.normpath(r["file"]): r for r in map(json.loads, out.splitlines())}

ours = {}
for f in files:
    line = subprocess.run([coldsend, "classify", f], capture_output=True, text=True).stdout.strip()
    ours[os.path.normpath(f)] = json.loads(line) if line else {"kind": "other"}

bounces = [f for f in ours if labels.get(f, {}).get("bounce") == 1]
non_bounces = [f for f in ours if labels.get(f, {}).get("bounce") == 0]
found = [f for f in bounces if ours[f]["kind"] == "bounce"]
hard_agree = [f for f in found if (labels[f].get("hard") == 1) == ours[f]["bounce"]["hard"]]
reason_agree = [f for f in found if labels[f].get("reason") == ours[f]["bounce"]["reason"]]
false_bounces = [f for f in non_bounces if ours[f]["kind"] == "bounce"]
as_reply = [f for f in bounces if ours[f]["kind"] == "reply"]


def pct(a, b):
    return f"{len(a)}/{len(b)} = {100.0 * len(a) / max(len(b), 1):.1f}%"


print(f"corpus: {corpus} ({len(files)} messages: {len(bounces)} bounces, {len(non_bounces)} non-bounces per Sisimai)")
print(f"bounce detection:        {pct(found, bounces)}")
print(f"hard/soft agreement:     {pct(hard_agree, found)}")
print(f"reason agreement:        {pct(reason_agree, found)}")
print(f"non-bounces as bounces:  {len(false_bounces)}")
print(f"bounces as replies:      {len(as_reply)}")
print()
for f in sorted(set(bounces) - set(found)):
    print(f"MISSED      {os.path.relpath(f, corpus)}: ours {ours[f]['kind']}, sisimai {labels[f].get('reason')}")
for f in false_bounces:
    print(f"FALSE       {os.path.relpath(f, corpus)}: ours {ours[f]['bounce']['reason']}, sisimai not a bounce")
for f in sorted(found):
    o, s = ours[f]["bounce"], labels[f]
    if (s.get("hard") == 1) != o["hard"] or s.get("reason") != o["reason"]:
        print(f"DIFFERS     {os.path.relpath(f, corpus)}: ours {o['reason']}/{'hard' if o['hard'] else 'soft'}"
              f" ({o.get('status')}), sisimai {s.get('reason')}/{'hard' if s.get('hard') == 1 else 'soft'} ({s.get('status')})")
