"""Registration: one hook returning one record. No heavy import happens here, so
``thrifty plugins`` stays fast; torch is imported when the factory builds the draft."""

from thrifty import DraftModelSpec, EngineSettings, Option, hookimpl


def _build(verifier, max_ngram: int, min_ngram: int):
    from .draft import NgramDraft

    return NgramDraft(max_ngram=max_ngram, min_ngram=min_ngram)


def _export(options) -> EngineSettings:
    """vLLM's ``ngram`` method and transformers' prompt lookup are prompt-lookup drafts too:
    vLLM takes both suffix sizes; transformers tries suffixes down to one token, as
    ``min_ngram = 1`` does here. Which earlier occurrence each copies from is its own choice,
    so acceptance can differ a little from thrifty's."""
    return EngineSettings(
        vllm={"method": "ngram", "prompt_lookup_max": options["max_ngram"],
              "prompt_lookup_min": options["min_ngram"]},
        transformers={"max_matching_ngram_size": options["max_ngram"]},
        transformers_gamma="prompt_lookup_num_tokens",
    )


@hookimpl
def thrifty_draft_models():
    return [
        DraftModelSpec(
            name="ngram",
            factory=_build,
            description="prompt lookup: propose the tokens that followed the latest earlier "
                        "occurrence of the current suffix (no weights)",
            options={
                "max_ngram": Option(int, 3, "longest suffix to look up"),
                "min_ngram": Option(int, 2, "shortest suffix to look up"),
            },
            export=_export,
        )
    ]
