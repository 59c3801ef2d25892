#!/usr/bin/env python3
"""Writes the heavy benchmark mix to stdout: `python3 benches/peers/heavy_mix.py [LINES]`.

A chat-heavy server: engine lines (peer info, state changes, saves, warnings, errors) and
console events (chat, joins, leaves, commands, kicks, bans, promotions, whispers); about 82 %
of the lines match one of factorio-isr's shipped patterns with captures. The random seed is
fixed, so the same LINES always gives the same file.
"""
import random
import sys

random.seed(42)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
names = ["alice", "bob", "carol", "dave", "eve", "mallory", "trent", "peggy", "victor",
         "walter", "Xx_Sniper_xX", "factorio_fan42"]
msgs = ["hello", "gg", "anyone got iron plates?", "need more copper",
        "biters attacking the north wall", "brb", "train deadlock at junction 4", "lol", "ok",
        "launching rocket in 5"]
cpps = ["ServerMultiplayerManager.cpp", "GameActionHandler.cpp", "MultiplayerManager.cpp",
        "ServerSynchronizer.cpp", "AsyncScenarioSaver.cpp", "ServerRouter.cpp"]
reasons = ["quit", "dropped", "kicked", "desync", "afk"]
out = sys.stdout
buf = []
t = 0.0
for i in range(N):
    t += 0.0125
    sec = int(t)
    ts = "2025-01-01 %02d:%02d:%02d" % ((12 + sec // 3600) % 24, (sec // 60) % 60, sec % 60)
    r = random.random()
    n = random.choice(names)
    if r < 0.35:
        line = "%11.3f Info %s:%d: %s" % (t, random.choice(cpps), random.randint(10, 999), random.choice([
            "Received peer info for peer(%d) username(%s)." % (random.randint(1, 60), n),
            "updateTick(%d) changing state from(ConnectedLoadingMap) to(TryingToCatchUp)"
            % (random.randint(1000, 9999999)),
            "Saving finished",
            "Saving game as /opt/factorio/saves/_autosave%d.zip" % random.randint(1, 5),
            "Queued synchronous save for tick %d" % random.randint(1000, 9999999),
            "mapTick(%d) adding peer(%d) success." % (random.randint(1000, 9999999), random.randint(1, 60)),
        ]))
    elif r < 0.40:
        line = "%11.3f Warning %s:%d: %s" % (t, random.choice(cpps), random.randint(10, 999),
                                             "Player %s was not found in the game." % n)
    elif r < 0.43:
        line = "%11.3f Error %s:%d: %s" % (t, random.choice(cpps), random.randint(10, 999),
                                           "Received a message from peer(%d) in unexpected state"
                                           % random.randint(1, 60))
    elif r < 0.70:
        line = "%s [CHAT] %s: %s" % (ts, n, random.choice(msgs))
    elif r < 0.78:
        line = "%s [JOIN] %s joined the game" % (ts, n)
    elif r < 0.86:
        line = "%s [LEAVE] %s left the game" % (ts, n)
    elif r < 0.90:
        line = "%s [COMMAND] %s (command): /c game.print(%d)" % (ts, n, random.randint(0, 100))
    elif r < 0.93:
        line = "%s [KICK] %s was kicked by <server>. Reason: %s." % (ts, n, random.choice(reasons))
    elif r < 0.95:
        line = "%s [BAN] %s was banned by <server>. Reason: griefing." % (ts, n)
    elif r < 0.97:
        line = "%s [PROMOTE] %s was promoted to admin by <server>." % (ts, n)
    else:
        line = "%s [WHISPER] %s to %s: %s" % (ts, n, random.choice(names), random.choice(msgs))
    buf.append(line)
    if len(buf) >= 10000:
        out.write("\n".join(buf))
        out.write("\n")
        buf = []
if buf:
    out.write("\n".join(buf))
    out.write("\n")
