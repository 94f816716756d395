"""Write a file of everyday chat requests for ``thrifty distill --chat-prompts``.

The built-in requests of ``thrifty distill`` are 200 (25 topics x 8 tasks); a draft that serves
chat learns more from the verifier's answers to many kinds of request on many subjects. This
writes ``len(TOPICS) x len(FORMS)`` requests, one a line, in a seeded shuffle (``--chat-prompts``
holds out the first tenth, so the held-out requests mix every topic and form):

    python bench/chat_requests.py --out /tmp/requests.txt
    thrifty distill --corpus code,chat --chat-prompts /tmp/requests.txt --chat-turns 2 ...

No topic is named by a chat prompt of the held-out suite and no request occurs in one
(``tests/test_heldout_suite.py`` checks both, as it does for the built-in requests).
"""

from __future__ import annotations

import argparse
import random

from thrifty.atomic import write_atomically

TOPICS = [
    # everyday life
    "meal prepping for a busy week", "baking sourdough bread", "brewing pour-over coffee",
    "growing tomatoes on a balcony", "keeping houseplants alive", "training a puppy to sit",
    "adopting a rescue cat", "planning a road trip through Spain", "packing light for travel",
    "saving for a first apartment", "building an emergency fund", "paying off credit card debt",
    "negotiating a salary offer", "preparing for a job interview", "writing a cover letter",
    "running a first 5k race", "stretching after a workout", "getting better sleep",
    "learning to swim as an adult", "starting a vegetable garden", "decluttering a small flat",
    "hosting a dinner party", "choosing a used bicycle", "fixing a leaky faucet",
    "painting a bedroom wall", "organising a birthday party for kids", "learning to knit",
    "reducing food waste at home", "composting kitchen scraps", "choosing hiking boots",
    # study and work
    "taking lecture notes", "preparing for a chemistry exam", "learning Spanish vocabulary",
    "practising the piano scales", "reading music notation", "giving a wedding toast",
    "running a team retrospective", "writing meeting minutes", "estimating project deadlines",
    "mentoring a junior colleague", "managing remote teams", "starting a small bakery business",
    "writing a product description", "pricing freelance design work", "keeping a work journal",
    # software
    "Rust ownership and borrowing", "Go channels and goroutines", "SQL joins",
    "database indexes", "CSS grid layouts", "React state hooks", "git rebase and merge",
    "Docker containers", "writing shell scripts in bash", "REST API pagination",
    "OAuth login flows", "Kubernetes deployments", "memory leaks in JavaScript",
    "async and await in Python", "type hints in Python", "pandas dataframes",
    "NumPy broadcasting", "writing a command-line tool", "logging in a web service",
    "code review etiquette", "technical debt", "continuous integration pipelines",
    "caching database queries", "hash maps", "graph traversal", "dynamic programming",
    "floating point rounding errors", "Unicode and text encodings", "time zones in software",
    "regular backups of a laptop", "password managers", "two-factor authentication",
    # science and ideas
    "how vaccines train the immune system", "plate tectonics", "the speed of light",
    "how rainbows form", "the life cycle of stars", "ocean tides", "how batteries store energy",
    "electric cars and their range", "solar panels on a house", "antibiotic resistance",
    "the human microbiome", "how bees make honey", "migratory birds", "coral reefs",
    "the Roman aqueducts", "the printing press", "the Silk Road trade routes",
    "the Apollo moon landings", "the invention of the telephone", "ancient Egyptian pyramids",
    "supply and demand", "compound interest", "inflation and prices", "index funds",
    "the scientific method", "probability of coin flips", "the Pythagorean theorem",
    "statistics and averages", "logical fallacies in arguments", "stoic philosophy",
    # culture
    "writing a haiku about autumn", "jazz improvisation", "film noir movies",
    "the rules of chess openings", "board games for a family night", "photography composition",
    "watercolour painting for beginners", "writing a mystery novel plot", "stand-up comedy",
    "learning to draw faces", "classical music for studying", "podcast interview questions",
]
"""Subjects, each specific enough that no everyday chat question names one by chance."""

FORMS = [
    "How do I get started with {}?", "Can you give me three practical tips on {}?",
    "I'm confused about {}. Can you explain it step by step?",
    "What are the pros and cons of {}?", "Explain {} as if I were ten years old.",
    "What are the most common mistakes people make with {}?",
    "Make a one-week plan for {}.", "Write a short, friendly email to a friend about {}.",
    "What questions should I ask an expert on {}?", "Tell me a surprising fact about {}.",
    "Summarise what a beginner should know about {} in five bullet points.",
    "Write a short poem inspired by {}.", "Give me a quick quiz with answers on {}.",
    "What is a popular myth about {}, and what is the truth?",
    "Suggest three titles for a blog post on {}.", "How would you teach {} to a class?",
    "What tools or resources help with {}?", "Write a two-line joke about {}.",
    "Describe a realistic scenario where {} matters.",
    "Compare an old-fashioned and a modern approach to {}.",
]
"""Kinds of request, each with one ``{}`` for a topic."""


def requests(seed: int = 0) -> list[str]:
    """Every form applied to every topic, shuffled with ``seed``."""
    out = [form.format(topic) for topic in TOPICS for form in FORMS]
    random.Random(seed).shuffle(out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the text file to write, one request a line")
    ap.add_argument("--seed", type=int, default=0, help="the shuffle's seed")
    args = ap.parse_args(argv)
    write_atomically(args.out, "\n".join(requests(args.seed)) + "\n")
    print(f"wrote {args.out}: {len(TOPICS) * len(FORMS)} requests "
          f"({len(TOPICS)} topics x {len(FORMS)} forms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
