"""Code extraction: last fenced block after the last </think>."""

import pytest

from sandbox.core.extract import extract_code


@pytest.mark.parametrize("completion, expected", [
    ("think</think>\n```python\nprint(1)\n```\n", "print(1)\n"),
    ("t</think>```python\na=1\n```\ntext\n```python\nprint(2)\n```", "print(2)\n"),
    ("```python\nprint('thinking')\n```</think>\n```py\nprint(3)\n```", "print(3)\n"),
    ("a</think>b</think>\n```\nprint(4)\n```", "print(4)\n"),
    ("x</think>\n```cpp\nint main(){}\n```", "int main(){}\n"),
    ("x</think>\n````python\ns = '```'\nprint(s)\n````", "s = '```'\nprint(s)\n"),
    ("x</think>\n```python\nprint(5)\n# cut at the solution budget", "print(5)\n# cut at the solution budget\n"),
    ("x</think>Here:```python\nprint(6)```", "print(6)\n"),
    ("x</think>\n```python\nprint(7)\n```\nOutput:\n```\n7\n```", "7\n"),  # last block, as the paper
    ("x</think>\nno code at all", None),
    ("```python\nprint(1)\n```\nthinking never closed", None),
    ("x</think>\n```python\n\n```", None),
    ("", None),
])
def test_extract_code(completion, expected):
    assert extract_code(completion) == expected


def test_without_think_end_when_not_required():
    assert extract_code("```python\nprint(1)\n```", require_think_end=False) == "print(1)\n"
