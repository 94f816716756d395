"""Registration: one hook returning one record. No heavy import happens here, so
``thrifty plugins`` stays fast; torch is imported when the factory builds the draft."""

from thrifty import DraftModelSpec, Option, hookimpl


def _build(verifier, max_ngram: int, min_ngram: int):
    from .draft import NgramDraft

    return NgramDraft(max_ngram=max_ngram, min_ngram=min_ngram)


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
        )
    ]
