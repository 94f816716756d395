"""Test prompts: code and prose of different lengths, so that batches of four are ragged."""

CODE = [
    "def fibonacci(n):\n",
    "import numpy as np\n\ndef softmax(x):\n    \"\"\"Numerically stable softmax.\"\"\"\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
    "# Read a CSV file and print the sum of the second column\nimport csv\n\n",
    "def is_prime(n: int) -> bool:\n    if n < 2:\n        return False\n",
    "for i in range(10):\n",
    "SELECT name, COUNT(*) FROM orders\n",
    "function add(a, b) {\n",
    "def binary_search(xs, target):\n    lo, hi = 0, len(xs) - 1\n    while lo <= hi:\n",
    "#include <stdio.h>\n\nint main(void) {\n",
    "def quicksort(arr):\n    if len(arr) <= 1:\n        return arr\n    pivot = arr[0]\n",
]

PROSE = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "Photosynthesis is the process by which plants",
    "Here are three tips for staying healthy:\n1.",
    "The history of the Roman Empire",
    "Water boils at 100 degrees Celsius because",
    "My favourite book is",
    "In machine learning, overfitting happens when a model",
    "The sun rose over the mountains, and",
    "Dear team, thank you all for your hard work this quarter. As we",
]

PROMPTS = CODE + PROSE
