"""Docs check: every public function of calc is documented in README.md and has a docstring."""

import ast
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
readme = (root / "README.md").read_text()
tree = ast.parse((root / "src" / "calc" / "__init__.py").read_text())
problems = []
for node in tree.body:
    if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
        if not ast.get_docstring(node):
            problems.append(f"{node.name}: no docstring")
        if f"`{node.name}" not in readme:
            problems.append(f"{node.name}: not mentioned in README.md")
for p in problems:
    print(p)
print(f"checked docs: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
