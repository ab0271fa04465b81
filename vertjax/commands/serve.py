"""`vertjax serve --config ...`: the assistant over HTTP (OpenAI-compatible chat + /v1/answer)."""

from __future__ import annotations

import argparse

from vertjax.commands import answer

HELP = "serve the assistant over HTTP on 127.0.0.1 (POST /v1/chat/completions, /v1/answer)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vertjax.system import server

    answer.add_system_flags(parser)
    defaults = server.ServerConfig()
    parser.add_argument(
        "--host",
        default=defaults.host,
        help=f"bind address; anything but loopback needs ${defaults.api_key_env} set",
    )
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--max_body_bytes", type=int, default=defaults.max_body_bytes)
    parser.add_argument(
        "--request_timeout",
        type=float,
        default=defaults.request_timeout,
        help="seconds an answer may take before the request gets 504",
    )
    parser.add_argument(
        "--request_deadline",
        type=float,
        default=defaults.request_deadline,
        help="seconds a request's line, headers and body may take to arrive (then 408)",
    )
    parser.add_argument(
        "--max_concurrent",
        type=int,
        default=defaults.max_concurrent,
        help="answers computed at once",
    )
    parser.add_argument(
        "--max_connections",
        type=int,
        default=defaults.max_connections,
        help="connections served at once; one more gets 503",
    )
    parser.add_argument("--backlog", type=int, default=defaults.backlog, help="listen backlog")
    parser.add_argument("--api_key_env", default=defaults.api_key_env)


def run(args: argparse.Namespace) -> int:
    from vertjax.system import server

    config = server.ServerConfig(
        host=args.host,
        port=args.port,
        max_body_bytes=args.max_body_bytes,
        request_timeout=args.request_timeout,
        request_deadline=args.request_deadline,
        max_concurrent=args.max_concurrent,
        max_connections=args.max_connections,
        backlog=args.backlog,
        api_key_env=args.api_key_env,
    )
    httpd = server.make_server(answer.build_assistant(args), config)
    host, port = httpd.server_address[:2]
    auth = "bearer token required" if httpd.api_key else "no API key (loopback only)"
    print(f"vertjax serve: listening on http://{host}:{port} ({auth})", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0
