"""Entry point: ``python -m ferry_emulator --port PORT [--region us-east-1] [--verbose]``.

Binds 127.0.0.1 only, prints ``ready http://127.0.0.1:PORT`` once it accepts
connections, and exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ferry_emulator", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0 = pick a free one)")
    parser.add_argument("--region", default="us-east-1", help="default region for unsigned requests")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--iam-policy",
        action="append",
        default=[],
        metavar="FILE",
        help="enforce this IAM policy (JSON, or a template's FerryRole policy) on --iam-principal's calls",
    )
    parser.add_argument(
        "--iam-principal",
        action="append",
        default=[],
        metavar="ACCESS_KEY_ID",
        help="access key id whose calls --iam-policy governs (repeatable; default: ferryd)",
    )
    parser.add_argument(
        "--iam-role-policy",
        action="append",
        default=[],
        metavar="ROLE=FILE[#Role/Policy]",
        help="enforce FILE on the credentials AssumeRole issues for role ROLE (repeatable)",
    )
    parser.add_argument(
        "--visibility-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="eventual consistency: EC2 reads miss what was created or tagged this recently (default 0: off)",
    )
    parser.add_argument(
        "--visibility-key",
        action="append",
        default=[],
        metavar="ACCESS_KEY_ID",
        help="only this access key's EC2 calls see the delay (repeatable; default: every caller)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    # Before moto is imported: no default AMIs (their snapshots would pollute DescribeSnapshots).
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    os.environ.setdefault("AWS_DEFAULT_REGION", args.region)
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from . import install, lifecycle
    from .middleware import EmulatorMiddleware

    install()
    if args.iam_policy:
        from .iam import ENFORCER

        roles: dict[str, list[str]] = {}
        for spec in args.iam_role_policy:
            role, sep, file = spec.partition("=")
            if not sep or not role or not file:
                parser_error = f"--iam-role-policy wants ROLE=FILE, got {spec!r}"
                print(f"ferry_emulator: {parser_error}", file=sys.stderr)
                return 2
            roles.setdefault(role, []).append(file)
        ENFORCER.configure(args.iam_policy, args.iam_principal or ["ferryd"], roles=roles)
    if args.visibility_delay:
        from .consistency import CONSISTENCY

        try:
            CONSISTENCY.configure(
                {"delay_seconds": args.visibility_delay, "access_keys": args.visibility_key or None}
            )
        except ValueError as exc:
            print(f"ferry_emulator: --visibility-delay: {exc}", file=sys.stderr)
            return 2
    app = EmulatorMiddleware(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)
    ticker = lifecycle.Ticker()
    ticker.start()

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    serving = threading.Thread(target=server.serve_forever, name="ferry-emulator-http", daemon=True)
    serving.start()
    print(f"ready http://127.0.0.1:{server.server_port}", flush=True)
    while not stop.wait(0.5):
        if not serving.is_alive():
            print("ferry-emulator: HTTP server stopped unexpectedly", file=sys.stderr)
            return 1
    ticker.stopped.set()
    server.shutdown()
    server.server_close()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # do not wait for in-flight request threads (e.g. SQS long polls)
