"""A beats (Lumberjack v2) receiver that nobody on this project wrote: the server of the PyPI
package `timbersnake`, run so that a test can compare what it decodes with what was sent.

Prints `PORT <n>` once it listens on 127.0.0.1 (an OS-assigned port), then one line
`EVENT <json>` per event that timbersnake decoded, as timbersnake decoded it (taken from its
own "recv JSON" debug record, so the framing, the decompression and the JSON parsing are all
timbersnake's). It acknowledges as timbersnake does: every data frame of an uncompressed window
with its own number (partial acknowledgements), a compressed frame with its last number.

One shim: timbersnake 0.1.0 calls `json.parse` (which does not exist) on uncompressed data
frames; it is pointed at `json.loads`, which its compressed path already uses.
"""

import asyncio
import contextlib
import json
import logging
import sys
import types

import timbersnake.server as ts

ts.json = types.SimpleNamespace(loads=json.loads, parse=json.loads)


class Capture(logging.Handler):
    def emit(self, record):
        if record.msg == "recv JSON: %s":
            # A single mapping argument is kept by `logging` as the arguments themselves.
            event = record.args if isinstance(record.args, dict) else record.args[0]
            sys.stdout.write("EVENT " + json.dumps(event) + "\n")
            sys.stdout.flush()


async def main():
    log = logging.getLogger("timbersnake")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(Capture())
    # Its constructor prints a table of frame handlers: not on stdout, which carries events.
    with contextlib.redirect_stdout(sys.stderr):
        server = ts.Server("127.0.0.1", 0)
    listening = await asyncio.start_server(server.handle_client_callback, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    async with listening:
        await listening.serve_forever()


asyncio.run(main())
