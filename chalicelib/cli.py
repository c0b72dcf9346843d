"""Local operations: `python -m chalicelib.cli {serve,token,seed,run-job}`.

serve    start DynamoDB Local (data kept in .local/ddb), moto, a fake WeChat and the API on PORT (8000)
token    print a bearer token the local API accepts
seed     load the demo brand into the running local stack
run-job  run a scheduled function now against the running local stack
routes   rewrite chalicelib/api/routes.json from the views' declarations (after adding or moving a route)
policy   rewrite docs/access-policy.md from chalicelib/domain/policy.py
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The scheduled functions, as deployed: infra/functions.json is the one list (name -> module:handler).
# A job fanned out by a state machine on AWS names a `local_handler` that runs its whole run with a worker pool.
JOBS = {f["name"]: f"{f['module']}:{f.get('local_handler') or f['handler']}"
        for f in json.loads((ROOT / "infra" / "functions.json").read_text())["functions"]}
ROLES = ("member", "staff", "store_manager", "region_manager", "hq", "integration")


def _stack_env() -> dict[str, str]:
    from .local.stack import STACK_ENV_FILE

    if not STACK_ENV_FILE.exists():
        raise SystemExit("The local stack is not running: start it with `make run` first.")
    return json.loads(STACK_ENV_FILE.read_text())


def _attach() -> None:
    os.environ.update(_stack_env())
    from . import bootstrap

    bootstrap.reset()


def cmd_token(args: argparse.Namespace) -> None:
    import base64

    from .adapters.tokens import mint_token
    from .local.stack import local_secret_bundle

    bundle = local_secret_bundle()
    claims: dict[str, Any] = {"role": args.role, "sub": args.sub or f"local-{args.role}"}
    if args.role == "member":
        if not args.member:
            raise SystemExit("--member MEMBER_ID is required for a member token")
        claims.update(iss="chaincrm", member_id=args.member, sub=args.sub or f"member:{args.member}")
        key = base64.b64decode(bundle["member_signing"])
    else:
        claims.update(iss="chaincrm-local-idp")
        key = base64.b64decode(bundle["local_idp"])
        if args.store:
            claims["store_ids"] = args.store
        if args.region:
            claims["region_id"] = args.region
    print(mint_token(key, claims, ttl_seconds=args.ttl))


def cmd_seed(args: argparse.Namespace) -> None:
    _attach()
    from .local.demo import seed
    from .local.demo_history import load

    print(json.dumps({**seed(), **load()}))


def cmd_run_job(args: argparse.Namespace) -> None:
    if args.name not in JOBS:
        raise SystemExit(f"unknown job {args.name!r}; jobs: {', '.join(sorted(JOBS))}")
    _attach()
    module, func = JOBS[args.name].split(":")
    sys.path.insert(0, str(ROOT))
    handler = getattr(importlib.import_module(module), func)
    event: dict[str, Any] = {"source": "chaincrm.cli"}
    if args.date:
        event["date"] = args.date
    print(json.dumps(handler(event, _LocalContext(args.name)), default=str))


class _LocalContext:
    """What Powertools reads from a Lambda context."""

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{name}"
        self.aws_request_id = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def cmd_serve(args: argparse.Namespace) -> None:
    from .local.server import create_server
    from .local.stack import LOCAL_DIR, STACK_ENV_FILE, LocalStack, local_secret_bundle

    # `kill`/`timeout` send SIGTERM, which by default skips `finally`: turn it into a clean exit so the
    # DynamoDB Local JVM is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    port = int(os.environ.get("PORT", args.port))
    stack = LocalStack(local_secret_bundle(), db_path=LOCAL_DIR / "ddb", ddb_port=args.ddb_port,
                       ddb_log=LOCAL_DIR / "dynamodb-local.log")
    print(f"starting DynamoDB Local on {args.ddb_port or 'a free port'} (data in .local/ddb) ...", flush=True)
    stack.start()
    try:
        STACK_ENV_FILE.write_text(json.dumps(stack.env, indent=2))
        from . import bootstrap
        from .local.demo import seed

        bootstrap.reset()
        from .local.demo_history import load

        print(f"demo data: {json.dumps(seed())}", flush=True)
        print(f"demo year: {json.dumps(load())}", flush=True)  # once per database: a year of trade to report on
        sys.path.insert(0, str(ROOT))
        # Last night's segmentation, so a newcomer's member views and /analytics/rfm are not empty.
        from functions.rfm import run_locally

        night = run_locally({"source": "chaincrm.cli"}, workers=2)
        print(f"nightly RFM as of {night['as_of']}: {night['classified']} members classified", flush=True)
        from app import app

        from .local.workers import QueueWorkers

        QueueWorkers().start()  # coupon audience jobs: the queue's consumer, as SQS runs it on AWS
        server = create_server(app, "127.0.0.1", port)
        print(f"chaincrm API on http://127.0.0.1:{port}   (fake WeChat: {stack.wechat.base_url})")
        print(f"  curl http://127.0.0.1:{port}/health")
        print("  TOKEN=$(.venv/bin/python -m chalicelib.cli token --role hq)")
        print(f'  curl -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:{port}/members?phone=13800000001"',
              flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        STACK_ENV_FILE.unlink(missing_ok=True)
        stack.stop()


def cmd_routes(args: argparse.Namespace) -> None:
    from .api import write_route_table

    print(f"wrote {write_route_table().relative_to(ROOT)}")


POLICY_DOC = ROOT / "docs" / "access-policy.md"


def policy_doc() -> str:
    from .domain.policy import markdown_table

    return ("# Access policy\n\nGenerated from `chalicelib/domain/policy.py` by `python -m chalicelib.cli policy`; "
            "do not edit by hand.\n\nCells name the scope rule a role gets: `any` (the role is enough), `self` "
            "(a member's own record), `store` (the resource's store: staff, managers and integrations their "
            "stores, region managers their region, HQ all); `—` is refused with 403.\n\n" + markdown_table())


def cmd_policy(args: argparse.Namespace) -> None:
    POLICY_DOC.write_text(policy_doc())
    print(f"wrote {POLICY_DOC.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the local stack")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--ddb-port", type=int, default=int(os.environ.get("DDB_PORT", "8100")))
    serve.set_defaults(func=cmd_serve)
    token = sub.add_parser("token", help="print a local bearer token")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--store", action="append", help="store id in scope (repeatable)")
    token.add_argument("--region", help="region id in scope (region_manager)")
    token.add_argument("--member", help="member id (role member)")
    token.add_argument("--sub", help="the caller's own id")
    token.add_argument("--ttl", type=int, default=12 * 3600, help="seconds until it expires")
    token.set_defaults(func=cmd_token)
    sub.add_parser("seed", help="load the demo brand").set_defaults(func=cmd_seed)
    job = sub.add_parser("run-job", help="run a scheduled function now")
    job.add_argument("name", choices=sorted(JOBS))
    job.add_argument("--date", help="run as of this business day (YYYY-MM-DD), e.g. to re-run a missed night")
    job.set_defaults(func=cmd_run_job)
    sub.add_parser("routes", help="rewrite chalicelib/api/routes.json").set_defaults(func=cmd_routes)
    sub.add_parser("policy", help="rewrite docs/access-policy.md").set_defaults(func=cmd_policy)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
