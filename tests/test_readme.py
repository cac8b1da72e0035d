"""The README's Python examples run as written."""
import re

from .conftest import REPO


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["loss"] > 0 and 0 <= namespace["acc"] <= 1
