"""OpsetUpgrade.changes (Swift) lists every operator version in 8...23 whose signature differs from
the previous version in the onnx package's schemas, and every deprecation."""

import re

import onnx.defs

from _qdq_helpers import REPO


def swift_table():
    text = (REPO / "Sources" / "QuantKitONNX" / "OpsetUpgrade.swift").read_text()
    body = text[text.index("static let changes"):text.index("]\n\n", text.index("static let changes"))]
    table = {}
    for op, steps in re.findall(r'"(\w+)": \[(.*)\],', body):
        table[op] = {int(v) for v in re.findall(r"(\d+): \.", steps)}
    return table


def signature(schema):
    attrs = {n: (a.required, str(a.default_value) if a.default_value.name else None) for n, a in schema.attributes.items()}
    return ([(i.name, str(i.option)) for i in schema.inputs], [(o.name, str(o.option)) for o in schema.outputs], attrs)


def test_every_signature_change_is_listed():
    history = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain == "":
            history.setdefault(schema.name, {})[schema.since_version] = schema
    table = swift_table()
    assert len(table) > 40 and table["ReduceMean"] == {18}
    missing = []
    for op, versions in history.items():
        ordered = sorted(versions)
        for old, new in zip(ordered, ordered[1:]):
            if not 7 < new <= 23:
                continue
            changed = signature(versions[old]) != signature(versions[new]) or versions[new].deprecated
            if changed and new not in table.get(op, set()):
                missing.append(f"{op} {old}->{new}")
    assert not missing, missing
    # Changes of meaning with the same signature.
    for op, version in [("Softmax", 13), ("LogSoftmax", 13), ("Hardmax", 13), ("GroupNormalization", 21),
                        ("GridSample", 20), ("RoiAlign", 16), ("Resize", 11)]:
        assert version in table[op], (op, version)
