"""The xDSL context of this project and small IR helpers shared by passes and tools."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import (
    AnyFloat,
    BytesAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    FunctionType,
    IndexType,
    IntegerType,
    ModuleOp,
    UnregisteredOp,
)
from xdsl.ir import Attribute, Operation
from xdsl.parser import Parser
from xdsl.utils.mlir_lexer import MLIRTokenKind

from rdu_compiler.dtypes import FLOAT_BITS, TABLE


def make_context() -> Context:
    """An xDSL context with every dialect a torch-mlir linalg module and an rdu program use.

    Unregistered ops are allowed so that ops xDSL does not define (`linalg.batch_matmul`,
    `tm_tensor.scan`) parse; `rdu-convert-linalg` converts them or names them in an error.
    """
    from xdsl.dialects import get_all_dialects

    from rdu_compiler.dialects.rdu import RDU

    ctx = Context(allow_unregistered=True)
    for name, factory in get_all_dialects().items():
        ctx.register_dialect(name, factory)
    ctx.load_dialect(RDU)
    return ctx


_DENSE_HEX = re.compile(r'dense<([^<>"]*0x[0-9A-Fa-f]+[^<>"]*)>(\s*:\s*tensor<(?:[0-9]+x)*(f16|bf16|f32|f64)>)')
_ELEMENT = re.compile(r"0x[0-9A-Fa-f]+|[-+]?(?:inf|nan|[0-9][0-9.]*(?:[eE][-+]?[0-9]+)?)")


def _hex_dense_to_bytes(match: re.Match[str]) -> str:
    content, suffix, elt = match.group(1), match.group(2), match.group(3)
    bits = []
    for token in _ELEMENT.findall(content):
        if token.startswith("0x"):
            bits.append(int(token, 16))
        else:
            bits.append(int(np.asarray(float(token), TABLE[elt].numpy).view(FLOAT_BITS[elt])))
    data = np.asarray(bits, dtype=FLOAT_BITS[elt]).astype("<" + FLOAT_BITS[elt].str[1:])
    if len(set(bits)) == 1:
        data = data[:1]
    return f'dense<"0x{data.tobytes().hex().upper()}">{suffix}'


def fix_hex_float_literals(text: str) -> str:
    """Rewrite float `dense<0x...>` literals to the hex-bytes form `dense<"0x...">`.

    MLIR prints non-finite floats (-inf masks) in hex; xDSL 0.74 reads an unquoted hex
    element of a float tensor as an integer value (0xFF800000 -> 4286578688.0) instead
    of bits. The quoted little-endian byte form is read correctly.
    """
    if "0x" not in text:
        return text
    return _DENSE_HEX.sub(_hex_dense_to_bytes, text)


#: A splat of at most this many elements is expanded as xDSL does (xDSL's ops read small
#: attributes such as a convolution's ``strides = dense<1> : tensor<2xi64>`` element by
#: element); a larger one keeps a single element.
SPLAT_EXPAND_LIMIT = 1 << 16


#: Texts `_SplatParser` parses once: an op's function type (a parenthesized type list, no
#: nested parentheses, then one type or list) and a properties dict without nested braces
#: or strings. Longer candidates than `_MEMO_MAX_CHARS` are parsed every time.
_FUNCTION_TYPE_TEXT = re.compile(r"\([^()]*\) -> (?:\([^()]*\)|[^\s(),{}]+)")
_PROPERTIES_TEXT = re.compile(r'<\{[^{}"]*\}>')
_MEMO_MAX_CHARS = 4096


class _SplatParser(Parser):
    """xDSL's parser, except that a large splat ``dense<v> : tensor<AxBxf32>`` stays one element.

    xDSL 0.74 expands a splat into every element (``dense<0.0> : tensor<1000000x1000000xf32>``,
    a few bytes of text, asks for 4 TB). Here a splat of more than
    :data:`SPLAT_EXPAND_LIMIT` elements holds the single value; xDSL prints such an
    attribute back as the splat, and this project's readers of constants (rdu-convert-linalg's
    folding, the emulator, Triton) treat a one-element value of a larger shape as a splat.
    """

    def __init__(self, ctx: Context, text: str, name: str = "<input>") -> None:
        super().__init__(ctx, text, name)
        self._memo: dict[tuple[int, str], Any] = {}

    def parse_function_type(self) -> FunctionType:
        return self._memoized(0, _FUNCTION_TYPE_TEXT, super().parse_function_type)

    def parse_optional_properties_dict(self) -> dict[str, Attribute]:
        return dict(self._memoized(1, _PROPERTIES_TEXT, lambda: dict(super(_SplatParser, self).parse_optional_properties_dict())))

    def _memoized(self, kind: int, pattern: re.Pattern[str], parse: Callable[[], Any]) -> Any:
        """`parse()`, or the value a text equal to the one at the cursor parsed to before.

        A generic-form module spells the same op signature (`(tensor<1x8x8193x128xbf16>,
        ...) -> ...`) and properties (`<{indexing_maps = [#map, #map1], ...}>`) once per
        op, 32 times over in a 32-layer model; lexing and building them was ~2/3 of the
        parse. `pattern` finds the candidate text at the cursor; it is remembered only when
        `parse()` consumed exactly that text (followed by whitespace), so a pattern that
        stops short or runs over never changes what is parsed. Types and attributes are
        immutable; the aliases they may name (`#map`) are fixed for the whole file.
        """
        start = self.pos
        content = self.lexer.input.content
        m = pattern.match(content, start)
        if m is None or m.end() - start > _MEMO_MAX_CHARS:
            return parse()
        key = (kind, m.group(0))
        hit = self._memo.get(key)
        if hit is not None:
            self._resume_from(m.end())
            return hit
        value = parse()
        if self.pos >= m.end() and not content[m.end() : self.pos].strip():
            self._memo[key] = value
        return value

    def parse_dense_int_or_fp_elements_attr(self, type: Attribute | None) -> DenseIntOrFPElementsAttr:  # type: ignore[override]
        start = self.pos
        splat = self._parse_splat(type)
        if splat is not None:
            return splat
        self._resume_from(start)
        return super().parse_dense_int_or_fp_elements_attr(type)  # type: ignore[arg-type]

    def _parse_splat(self, type: Attribute | None) -> DenseIntOrFPElementsAttr | None:
        self.parse_punctuation("<", " in dense attribute")
        if self._current_token.kind in (MLIRTokenKind.L_SQUARE, MLIRTokenKind.GREATER):
            return None  # a list literal, or empty: not a splat
        hex_bytes = None
        if (hex_string := self.parse_optional_str_literal()) is not None:
            if len(hex_string) > 2 + 2 * 32:  # longer than one element of any type
                return None
            try:
                hex_bytes = bytes.fromhex(hex_string[2:])
            except ValueError:
                return None
            value = None
        else:
            values, shape = self._parse_tensor_literal()
            if shape or len(values) != 1:
                return None
            value = values[0]
        self.parse_punctuation(">", " in dense attribute")
        if type is None:
            self.parse_punctuation(":", " in dense attribute")
            type = self._parse_dense_literal_type()
        elt = type.element_type  # type: ignore[attr-defined]
        n = 1
        for d in type.get_shape():  # type: ignore[attr-defined]
            n *= d
        if n <= SPLAT_EXPAND_LIMIT or not isinstance(elt, (AnyFloat, IntegerType, IndexType)):
            return None
        if hex_bytes is not None:
            if len(hex_bytes) != elt.compile_time_size:
                return None
            data = hex_bytes
        else:
            v = value.to_type(self, elt)  # type: ignore[union-attr]
            assert not isinstance(v, tuple)  # a complex value: elt is not a complex type here
            if isinstance(elt, IntegerType):
                data = elt.pack([elt.get_normalized_value(int(v))])
            elif isinstance(elt, IndexType):
                data = elt.pack([int(v)])
            elif isinstance(elt, AnyFloat):
                data = elt.pack([float(v)])
            else:
                return None
        return DenseIntOrFPElementsAttr(type, BytesAttr(data))  # type: ignore[arg-type]


_RESOURCES = re.compile(r"\{-#\s*dialect_resources\s*:\s*\{\s*builtin\s*:\s*\{(?P<body>[^{}]*)\}\s*\}\s*#-\}\s*$")
_RESOURCE_ENTRY = re.compile(r'(?P<key>[\w.$-]+|"[^"]*")\s*:\s*"0x(?P<hex>[0-9A-Fa-f]*)"')


def inline_dense_resources(text: str) -> str:
    """Replace each ``dense_resource<key>`` whose blob is in the file's trailing
    ``{-# dialect_resources: {builtin: {...}} #-}`` section by ``dense<"0x...">`` with the
    same bytes, and drop the section.

    torch-mlir keeps constant tensors it creates (an int64 index table) as resource blobs,
    which xDSL 0.74 parses into a ``DenseResourceAttr`` without its data; inlined, the
    constant is an ordinary dense attribute that the passes and the emulator read. A blob
    is stored as a 4-byte alignment word then the little-endian elements (MLIR's format).
    A ``dense_resource`` whose blob is absent (``__elided__``) is left as it is.
    """
    if "dense_resource<" not in text or "dialect_resources" not in text:
        return text
    m = _RESOURCES.search(text)
    if m is None:
        return text
    blobs = {e.group("key").strip('"'): e.group("hex")[8:] for e in _RESOURCE_ENTRY.finditer(m.group("body"))}
    body = text[: m.start()]

    def repl(r: re.Match[str]) -> str:
        key = r.group(1).strip('"')
        data = blobs.get(key)
        return r.group(0) if data is None else f'dense<"0x{data.upper()}">'

    return re.sub(r'dense_resource<([\w.$-]+|"[^"]*")>', repl, body)


def make_parser(ctx: Context, text: str, name: str = "<input>") -> Parser:
    """An xDSL parser of MLIR ``text`` as this project reads it: large splats stay one
    element, resource blobs are inlined, hex float literals are read as bits."""
    return _SplatParser(ctx, fix_hex_float_literals(inline_dense_resources(text)), name)


def parse_module(text: str, name: str = "<input>") -> ModuleOp:
    """Parse MLIR text (generic or custom form) into an xDSL module.

    A splat dense constant is never expanded: its attribute holds one element (see
    :class:`_SplatParser`), whatever its shape. Resource blobs of the file are inlined
    (:func:`inline_dense_resources`).

    Raises:
        xdsl.utils.exceptions.ParseError: the text is not valid MLIR for these dialects.
    """
    return make_parser(make_context(), text, name).parse_module()


def op_name(op: Operation) -> str:
    """The op's MLIR name, also for unregistered ops (`linalg.batch_matmul`)."""
    if isinstance(op, UnregisteredOp):
        return op.op_name.data
    return op.name


def int_values(array: DenseArrayBase[Any]) -> list[int]:
    """The values of an integer dense array property (sizes, fills, pads, sites) as ints."""
    return [int(v) for v in array.get_values()]
