"""The generic registry (afwpipe.registry) and its three uses: detectors, encoders, heads."""

from __future__ import annotations

import pytest

from afwpipe.errors import AfwpipeError, EncoderError
from afwpipe.registry import DuplicateNameError, Registry


class WidgetError(AfwpipeError):
    pass


def _widgets() -> tuple[Registry, list]:
    reg, calls = Registry("widget", WidgetError), []

    @reg.register("beta", default_cfg={"size": 2})
    def beta(*args, **kw):
        calls.append(("beta", args, kw))
        return "built beta"

    @reg.register("alpha", source="somewhere")
    def alpha(*args, **kw):
        return "built alpha"

    def fam(ident, *args, **kw):
        calls.append(("fam", ident, args, kw))
        return f"built {ident}"

    reg.register_family("fam:", fam, describe="<id>", default_cfg={"size": "any"})
    return reg, calls


def test_register_list_and_create_pass_arguments_through():
    reg, calls = _widgets()
    assert reg.list() == ["alpha", "beta", "fam:<id>"]  # names sorted, then families
    assert reg.list("b*") == ["beta"] and reg.list("fam*") == ["fam:<id>"] and reg.list("z*") == []
    assert reg.create("beta", 1, k=2) == "built beta" and calls[-1] == ("beta", (1,), {"k": 2})
    assert reg.default_cfg("beta") == {"size": 2} and reg.default_cfg("alpha") is None
    assert reg.entry("alpha").source == "somewhere" and reg.entry("alpha").prefix is None


def test_family_names_are_built_with_their_id():
    reg, calls = _widgets()
    assert reg.is_registered("fam:x.y") and reg.is_registered("beta")
    assert not reg.is_registered("fam:") and not reg.is_registered("gamma")  # an empty id is no name
    assert reg.create("fam:x.y", 3, k=4) == "built x.y" and calls[-1] == ("fam", "x.y", (3,), {"k": 4})
    assert reg.default_cfg("fam:x.y") == {"size": "any"} and reg.entry("fam:x.y").prefix == "fam:"


def test_unknown_name_is_one_message_in_the_namespace_error_class():
    reg, _ = _widgets()
    for call in (lambda: reg.create("gamma"), lambda: reg.default_cfg("gamma"), lambda: reg.create("fam:")):
        with pytest.raises(WidgetError) as err:
            call()
        assert type(err.value) is WidgetError
    with pytest.raises(WidgetError) as err:
        reg.create("gamma")
    assert str(err.value) == "unknown widget 'gamma'; registered: alpha, beta; families: fam:<id>"
    with pytest.raises(EncoderError) as err:
        Registry("thing", EncoderError).create("x")
    assert str(err.value) == "unknown thing 'x'; registered: (none)"


def test_a_name_or_prefix_is_registered_once():
    reg, _ = _widgets()
    beta = reg.entry("beta").builder
    reg.register("beta", default_cfg={"size": 2})(beta)  # the identical registration again: no-op
    assert reg.create("beta") == "built beta"
    for clash in (lambda: reg.register("beta")(lambda: None),  # another builder
                  lambda: reg.register("beta", default_cfg={"size": 3})(beta),  # same builder, other cfg
                  lambda: reg.register_family("fam:", lambda i: i)):
        with pytest.raises(DuplicateNameError, match="already registered"):
            clash()
    assert issubclass(DuplicateNameError, AfwpipeError) and issubclass(DuplicateNameError, ValueError)
    assert reg.create("beta") == "built beta" and reg.create("fam:q") == "built q"  # the first one stays


def test_the_three_namespaces_stay_apart():
    from afwpipe.encoders import ENCODERS, create_encoder, is_encoder, register_encoder
    from afwpipe.faces import DETECTORS, UnknownDetectorError, create_detector, is_detector
    from afwpipe.heads import HEADS, create_head, is_head

    assert len({id(DETECTORS), id(ENCODERS), id(HEADS)}) == 3
    assert not (set(DETECTORS.list()) & set(ENCODERS.list()) | set(DETECTORS.list()) & set(HEADS.list())
                | set(ENCODERS.list()) & set(HEADS.list()))
    assert is_head("tmf") and not is_encoder("tmf") and not is_detector("tmf")
    assert is_encoder("mae") and not is_head("mae") and is_detector("mtcnn") and not is_encoder("mtcnn")
    with pytest.raises(EncoderError, match="unknown encoder 'tmf'; registered: "):
        create_encoder("tmf")
    with pytest.raises(AfwpipeError, match="unknown head 'mae'; registered: .*msf, .*tmf"):
        create_head("mae", {"video": 4}, ["au"])
    with pytest.raises(UnknownDetectorError, match="unknown face detector 'tcn'; registered: .*mtcnn, .*retinaface"):
        create_detector("tcn")
    with pytest.raises(DuplicateNameError):
        register_encoder("mae")(lambda **kw: None)
