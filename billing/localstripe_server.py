"""localstripe for development and tests: bound to 127.0.0.1 only, state in memory only.

localstripe's own entry point binds every interface and pickles its state to /tmp; neither is
acceptable on a shared machine, so this starts its aiohttp app directly.
"""

import argparse

from aiohttp import web
from localstripe import resources, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    resources.Store.dump_to_disk = lambda self: None
    web.run_app(server.app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
