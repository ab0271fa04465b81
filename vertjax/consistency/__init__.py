"""vertjax.consistency: hallucination control — the T5 NLI consistency model (TRUE), answers with
citations and ALCE citation metrics, and NLI post-processing of answers.

The embedded demo's NLI stage lives in `vertjax.demo.consistency`.
"""
