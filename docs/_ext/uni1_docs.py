"""Sphinx extension of this site: the pages that must not drift from the code.

- ``uni1-stub``: documents names of the C extension from ``scenario_uni1/_core.pyi``
  (signatures, attribute and property types, docstrings), the stub that
  stubtest checks against the extension in CI. autodoc cannot read them from
  the extension: C methods carry no signature, member descriptors no type.
- ``uni1-header``: the manual of the C core, read from a header at build time:
  each comment block becomes prose, each declaration a C block, each banner
  (``/* --- */ /* Title */ /* --- */``) a section.
- ``shell``: a shell example that the doctest builder runs (bash -e, in the
  page's scratch directory) and the HTML shows as it is.
- Every Python or shell example must be executed: a code block that the
  doctest builder does not run is a warning (an error under ``-W``), unless it
  is a ``shell`` block with ``:norun:`` saying why, an include of a file that
  another CI layer runs, or a header excerpt.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Parser as RSTParser
from docutils.parsers.rst import directives
from docutils.utils import new_document
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOG = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "scenario_uni1" / "_core.pyi"

_BUILTIN_TYPES = frozenset(
    ["None", "str", "int", "float", "bool", "bytes", "tuple", "list", "dict", "object"]
)

# Languages of examples that must run; "c" blocks are header excerpts.
EXECUTABLE = {"python", "py", "python3", "pycon", "sh", "bash", "shell", "console", "default", ""}


# -- uni1-stub -----------------------------------------------------------------------------------


class _Stub:
    """The parsed stub: its top-level definitions, import table and comments."""

    def __init__(self, path: Path) -> None:
        source = path.read_text(encoding="utf-8")
        self.tree = ast.parse(source)
        self.defs = {
            n.name if not isinstance(n, ast.AnnAssign) else n.target.id: n
            for n in self.tree.body
            if isinstance(n, (ast.ClassDef, ast.FunctionDef))
            or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
        }
        self.aliases: dict[str, str] = {}
        self.typealiases: dict[str, str] = {}
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module
                if node.level:  # from ._job import Job as _PublicJob: the public class
                    module = "scenario_uni1"
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
            elif isinstance(node, ast.AnnAssign) and _is_alias(node):
                self.typealiases[node.target.id] = ast.unparse(node.value)  # type: ignore[union-attr]
        self.aliases["Self"] = ""  # replaced by the class at hand
        # Trailing comments (``retry_after: float | None  # the server's ...``) by line.
        self.comments = {
            tok.start[0]: tok.string.lstrip("#").strip()
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT
        }

    def annotation(self, node: ast.expr | None, owner: str, module: str) -> str:
        """The annotation as text, every name qualified so that it resolves."""
        if node is None:
            return ""
        text = ast.unparse(node)
        for name, value in self.typealiases.items():  # _Timeout: float | Deadline | None
            text = re.sub(rf"\b{name}\b", value, text)
        return re.sub(r"[A-Za-z_][\w.]*", lambda m: self._qualify(m.group(0), owner, module), text)

    def _qualify(self, name: str, owner: str, module: str) -> str:
        if name in _BUILTIN_TYPES:
            return name
        if name == "Self":
            return f"{module}.{owner}" if owner else "typing.Self"
        if name in self.aliases:
            return self.aliases[name]
        if name.startswith("builtins."):
            return name.removeprefix("builtins.")
        if name in self.defs and not name.startswith("_"):
            return f"{module}.{name}"
        return name


def _is_alias(node: ast.AnnAssign) -> bool:
    return ast.unparse(node.annotation) == "TypeAlias"


def _signature(stub: _Stub, fn: ast.FunctionDef, owner: str, module: str) -> str:
    a = fn.args
    parts: list[str] = []
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        if owner and i == 0 and arg.arg in ("self", "cls"):
            continue
        parts.append(_param(stub, arg, default, owner, module))
        if a.posonlyargs and arg is a.posonlyargs[-1]:
            parts.append("/")
    if a.vararg:
        parts.append("*" + _param(stub, a.vararg, None, owner, module))
    elif a.kwonlyargs:
        parts.append("*")
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        parts.append(_param(stub, arg, default, owner, module))
    if a.kwarg:
        parts.append("**" + _param(stub, a.kwarg, None, owner, module))
    ret = stub.annotation(fn.returns, owner, module)
    return f"({', '.join(p for p in parts if not p.lstrip('*').startswith('_'))})" + (
        f" -> {ret}" if ret else ""
    )


def _param(stub: _Stub, arg: ast.arg, default: ast.expr | None, owner: str, module: str) -> str:
    text = arg.arg
    if arg.annotation is not None:
        text += ": " + stub.annotation(arg.annotation, owner, module)
    if default is not None:
        text += (" = " if arg.annotation is not None else "=") + ast.unparse(default)
    return text


def _doc_lines(text: str | None) -> list[str]:
    if not text:
        return []
    import inspect

    return inspect.cleandoc(text).splitlines()


def _runtime(module: str, name: str):
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


class StubDirective(SphinxDirective):
    """``uni1-stub`` NAME [NAME...]: document names of _core as the stub declares them."""

    required_arguments = 1
    final_argument_whitespace = True
    option_spec = {"module": directives.unchanged, "private": directives.flag}

    def run(self) -> list[nodes.Node]:
        stub = _stub(self.env)
        self.env.note_dependency(str(STUB))
        module = self.options.get("module", "scenario_uni1._core")
        lines: list[str] = [f".. py:currentmodule:: {module}", ""]
        for name in self.arguments[0].split():
            node = stub.defs.get(name)
            if node is None:
                raise self.error(f"{name} is not in {STUB.name}")
            lines += self._render(stub, node, name, module)
        # Parsed as reStructuredText whatever the page's own markup (MyST here).
        document = new_document(str(STUB), self.state.document.settings)
        document.reporter = self.state.document.reporter
        RSTParser().parse("\n".join(lines), document)
        return list(document.children)

    def _render(self, stub: _Stub, node: ast.AST, name: str, module: str) -> list[str]:
        out: list[str] = []
        if isinstance(node, ast.AnnAssign):
            out += [
                f".. py:data:: {name}",
                f"   :type: {stub.annotation(node.annotation, '', module)}",
            ]
            comment = stub.comments.get(node.lineno)
            out += ["", f"   {comment}" if comment else "", ""]
        elif isinstance(node, ast.FunctionDef):
            out += [f".. py:function:: {name}{_signature(stub, node, '', module)}", ""]
            out += ["   " + line for line in _doc_lines(ast.get_docstring(node))] + [""]
        elif isinstance(node, ast.ClassDef):
            out += self._render_class(stub, node, module)
        return out

    def _render_class(self, stub: _Stub, node: ast.ClassDef, module: str) -> list[str]:
        bases = [stub.annotation(b, "", module) for b in node.bases]
        is_exc = any(b.endswith(("Error", "Exception")) for b in bases)
        init = next(
            (f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None
        )
        sig = _signature(stub, init, node.name, module).split(" ->")[0] if init else ""
        out = [f".. py:{'exception' if is_exc else 'class'}:: {node.name}{sig}", ""]
        if bases:
            out += ["   Bases: " + ", ".join(_base_ref(b, is_exc) for b in bases), ""]
        doc = ast.get_docstring(node) or getattr(_runtime(module, node.name), "__doc__", None)
        out += ["   " + line for line in _doc_lines(doc)] + [""]
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                out += [
                    f"   .. py:attribute:: {item.target.id}",
                    f"      :type: {stub.annotation(item.annotation, node.name, module)}",
                    "",
                ]
                comment = stub.comments.get(item.lineno)
                out += [f"      {comment[0].upper()}{comment[1:]}.", ""] if comment else []
            elif isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                is_prop = any(ast.unparse(d) == "property" for d in item.decorator_list)
                if is_prop:
                    ret = stub.annotation(item.returns, node.name, module)
                    out += [f"   .. py:property:: {item.name}", f"      :type: {ret}", ""]
                else:
                    out += [
                        f"   .. py:method:: {item.name}{_signature(stub, item, node.name, module)}",
                        "",
                    ]
                out += ["      " + line for line in _doc_lines(ast.get_docstring(item))] + [""]
        return out


def _base_ref(base: str, is_exc: bool) -> str:
    role = "py:exc" if is_exc else "py:class"
    if "." not in base:  # a builtin: Python's own documentation
        return f":external+python:{role}:`{base}`"
    return f":{role}:`~{base}`"


def _stub(env) -> _Stub:
    cached = getattr(env, "_uni1_stub", None)
    if cached is None:
        cached = env._uni1_stub = _Stub(STUB)
    return cached


# -- uni1-header ---------------------------------------------------------------------------------

_BANNER = re.compile(r"/\* -{20,} \*/\s*\n/\* (.+?)\s*\*/\s*\n/\* -{20,} \*/")
_COMMENT = re.compile(r"/\*(.*?)\*/", re.S)


def header_items(text: str) -> list[tuple[str, str]]:
    """The header as ("section", title), ("prose", text) and ("code", text) items in order."""
    items: list[tuple[str, str]] = []
    pos = 0
    code: list[str] = []

    def flush_code() -> None:
        block = "\n".join(code).strip("\n")
        code.clear()
        if block.strip() and not _is_guard(block):
            items.append(("code", block))

    while pos < len(text):
        banner = _BANNER.match(text, pos)
        if banner:
            flush_code()
            items.append(("section", banner.group(1)))
            pos = banner.end()
            continue
        line_end = text.find("\n", pos)
        line_end = len(text) if line_end < 0 else line_end
        line = text[pos:line_end]
        comment = _COMMENT.match(text, pos) if line.lstrip().startswith("/*") else None
        if comment and line.startswith("/*") and not code_pending(code):
            flush_code()
            items.append(("prose", _uncomment(comment.group(1))))
            pos = comment.end()
            continue
        code.append(line)
        pos = line_end + 1
    flush_code()
    return items


def code_pending(code: list[str]) -> bool:
    """A declaration is still open (a comment inside an enum or struct belongs to it)."""
    joined = "\n".join(ln for ln in code if 'extern "C"' not in ln)
    return joined.count("{") > joined.count("}")


def _is_guard(block: str) -> bool:
    lines = [ln for ln in block.splitlines() if ln.strip()]
    return all(
        re.match(r"#(ifndef|ifdef|endif|define \w+_H\b|if|else)|extern \"C\" \{|\}$", ln.strip())
        for ln in lines
    )


def lost_lines(text: str, items: list[tuple[str, str]]) -> list[str]:
    """Declaration lines of the header that no item shows (include guards excepted)."""
    shown = "\n".join(t for kind, t in items if kind == "code")
    outside_comments = _COMMENT.sub("", text)
    return [
        ln.strip()
        for ln in outside_comments.splitlines()
        if ln.strip() and ln.strip() not in shown and not _is_guard(ln)
    ]


def _uncomment(body: str) -> str:
    lines = [re.sub(r"^\s?\* ?", "", ln) for ln in body.splitlines()]
    return "\n".join(lines).strip("\n")


class HeaderDirective(SphinxDirective):
    """``uni1-header`` PATH: the manual of a C header, generated from it at build time."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = ROOT / self.arguments[0]
        self.env.note_dependency(str(path))
        text = path.read_text(encoding="utf-8")
        items = header_items(text)
        for line in lost_lines(text, items):
            # The manual must show the whole header: a construct this reader
            # does not know would otherwise vanish from it without a word.
            LOG.warning(
                "%s: not in the generated manual: %r",
                self.arguments[0],
                line,
                location=self.get_location(),
            )
        result: list[nodes.Node] = []
        parent: nodes.Element | None = None
        for kind, text in items:
            if kind == "section":
                parent = nodes.rubric(text, text)
                result.append(parent)
                continue
            if kind == "prose":
                result.extend(_prose_nodes(text))
            else:
                block = nodes.literal_block(text, text, language="c")
                block["uni1_header"] = True
                result.append(block)
        return result


def _prose_nodes(text: str) -> list[nodes.Node]:
    """Paragraphs stay paragraphs; indented lists and tables stay as written."""
    out: list[nodes.Node] = []
    for para in re.split(r"\n\s*\n", text):
        lines = para.splitlines()
        if len(lines) > 1 and any(ln.startswith(" ") for ln in lines[1:]):
            block = nodes.literal_block(para, para, language="none")
            block["uni1_header"] = True
            out.append(block)
        else:
            joined = " ".join(ln.strip() for ln in lines)
            out.append(nodes.paragraph(joined, joined))
    return out


# -- shell ---------------------------------------------------------------------------------------


class ShellDirective(SphinxDirective):
    """A shell example; the doctest builder runs it with _uni1_sh (conf.py's doctest setup)."""

    has_content = True
    optional_arguments = 1  # the doctest group
    option_spec = {"norun": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        code = "\n".join(self.content)
        block = nodes.literal_block(code, code, language="sh")
        self.set_source_info(block)
        if "norun" in self.options:
            block["uni1_norun"] = self.options["norun"]
            return [block]
        block["testnodetype"] = "testcode"
        block["groups"] = [self.arguments[0] if self.arguments else "default"]
        block["test"] = f"_uni1_sh({code!r})"
        block["options"] = {}
        return [block]


# -- every example runs ----------------------------------------------------------------------------


def check_examples(app: Sphinx, doctree: nodes.document) -> None:
    for block in doctree.findall(nodes.literal_block):
        if "testnodetype" in block or block.get("uni1_header") or block.get("uni1_norun"):
            continue
        language = block.get("language", "")
        if language not in EXECUTABLE:
            continue
        origin = block.source or block.get("source", "") or ""
        if "docstring of" in origin or origin.endswith(".py"):
            continue  # a docstring's diagram or example: help() shows it, the pages run theirs
        source = block.get("source", "")
        if (
            source
            and Path(source).is_file()
            and Path(source).suffix == ".py"
            and block.get("uni1_tested_by")
        ):
            continue
        LOG.warning(
            "a %s example that is not executed: use {testcode}, {doctest} or {shell} "
            "(or {shell} with :norun: REASON)",
            language or "code",
            location=block,
            type="uni1",
            subtype="example",
        )


def mark_includes(app: Sphinx, doctree: nodes.document) -> None:
    """literalinclude of an example file that a named CI layer runs: ':class: tested-by-LAYER'."""
    for block in doctree.findall(nodes.literal_block):
        for cls in block.get("classes", []):
            if cls.startswith("tested-by-"):
                block["uni1_tested_by"] = cls.removeprefix("tested-by-")


def qualify_bare_names(app: Sphinx, doctree: nodes.document) -> None:
    """A bare class name of a string annotation (``-> "Client"`` in the emulator's
    module), qualified by conf.uni1_bare_names before the Python domain resolves it
    (it would find no target, or several)."""
    from sphinx.addnodes import pending_xref

    for ref in doctree.findall(pending_xref):
        if ref.get("refdomain") == "py" and ref.get("reftarget") in app.config.uni1_bare_names:
            ref["reftarget"] = app.config.uni1_bare_names[ref["reftarget"]]


def setup(app: Sphinx) -> dict:
    app.add_config_value("uni1_bare_names", {}, "env", types=frozenset({dict}))
    app.connect("doctree-read", qualify_bare_names)
    app.add_directive("uni1-stub", StubDirective)
    app.add_directive("uni1-header", HeaderDirective)
    app.add_directive("shell", ShellDirective)
    app.connect("doctree-read", mark_includes)
    app.connect("doctree-read", check_examples, priority=600)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
