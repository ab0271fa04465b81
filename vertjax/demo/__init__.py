"""vertjax.demo: the tiny end-to-end reproduction (`vertjax demo`, `make demo`), one module a stage.

`pipeline.run_demo` runs the stages in order over one `--out` folder: `data` (packs, vocabulary),
`pretrain` (continued pretraining, PPL; reference decoding), `retrieval` (GTR vs BM25 vs hybrid),
`synth` (template instruction synthesis), `consistency` (the NLI judge), `answering` (the cited
answering system), and with `--llm` `llm_answers` (the local LLM's cited answers beside the
extractive ones); `report` writes `report.md`. Data the demo reads at run time (hand-written
claims and lay-language questions) lives in `vertjax/resources/demo/`.
"""
