"""The goal rules of CONTRACT.md, row by row: normalized as the API does, or the exact InvalidGoal.

The last tests send every accepted row to the fake API over HTTP: what the client lets through,
the provider's contract accepts.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from goaltrack import Goal, InvalidGoal, get_provider
from goaltrack.goals import sanitize_value
from goaltrack.testing.server import FakeAPIServer

VISITOR = "a3ab2331-989f-4cfa-91c6-2461c9e3c6bd"
DATAFAST = get_provider("datafast")
FAURYA = get_provider("faurya")
FLOWSERY = get_provider("flowsery")


def datafast(name: Any, **kwargs: Any) -> Goal:
    kwargs.setdefault("visitor_id", VISITOR)
    return Goal.create(DATAFAST, name, **kwargs)


# -- names --------------------------------------------------------------------------------------

DATAFAST_NAMES = [
    ("signup", "signup"),
    ("Newsletter Signup", "newsletter_signup"),
    ("checkout:completed", "checkout:completed"),
    ("plan-upgrade_2", "plan-upgrade_2"),
    ("A" * 64, "a" * 64),
]


@pytest.mark.parametrize(("given", "stored"), DATAFAST_NAMES)
def test_datafast_names_are_lowercased_with_spaces_as_underscores(given: str, stored: str) -> None:
    assert datafast(given).name == stored


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "invalid goal name ''"),
        ("a" * 65, "invalid goal name"),
        ("sign.up", "invalid goal name 'sign.up'"),
        ("café", "invalid goal name 'café'"),
        ("sign/up", "invalid goal name"),
        ("identify", "goal name 'identify' is reserved by datafast"),
        ("IDENTIFY", "goal name 'identify' is reserved by datafast"),
    ],
)
def test_datafast_name_errors(given: str, message: str) -> None:
    with pytest.raises(InvalidGoal, match="rule:") as info:
        datafast(given)
    assert message in str(info.value)
    assert info.value.field == "name"


@pytest.mark.parametrize("provider", [FAURYA, FLOWSERY])
@pytest.mark.parametrize("name", ["signup", "plan-upgrade_2", "x" * 64])
def test_faurya_and_flowsery_accept_their_names_unchanged(provider: Any, name: str) -> None:
    goal = Goal.create(provider, name, visitor_id="v1")
    assert goal.name == name


@pytest.mark.parametrize("provider", [FAURYA, FLOWSERY])
@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("Signup", "did you mean 'signup'?"),
        ("sign up", "did you mean 'sign_up'?"),
        ("checkout:done", ""),  # the colon is DataFast's only
        ("x" * 65, ""),
    ],
)
def test_faurya_and_flowsery_refuse_what_their_api_refuses(
    provider: Any, name: str, hint: str
) -> None:
    with pytest.raises(InvalidGoal, match="lowercase letters, digits, '_' and '-'") as info:
        Goal.create(provider, name, visitor_id="v1")
    assert hint in str(info.value)


def test_name_must_be_a_string() -> None:
    with pytest.raises(InvalidGoal, match="goal name must be a string, got int"):
        datafast(42)


# -- visitors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", [DATAFAST, FAURYA])
def test_datafast_and_faurya_need_a_visitor(provider: Any) -> None:
    with pytest.raises(InvalidGoal, match="needs the visitor id") as info:
        Goal.create(provider, "signup")
    assert info.value.field == "visitor_id"


def test_flowsery_goal_without_visitor_is_valid() -> None:
    goal = Goal.create(FLOWSERY, "signup")
    assert goal.body() == {"name": "signup"}


@pytest.mark.parametrize(
    "visitor_id", ["not-a-uuid", VISITOR + "0", "a3ab2331989f4cfa91c62461c9e3c6bd", 123]
)
def test_datafast_visitor_must_be_a_uuid(visitor_id: Any) -> None:
    with pytest.raises(InvalidGoal, match="not a well-formed datafast visitor id"):
        datafast("signup", visitor_id=visitor_id)


@pytest.mark.parametrize("visitor_id", ["v\r\nX-Evil: 1", "a b", "x" * 129, "<script>"])
def test_opaque_visitor_ids_refuse_control_characters_and_oversize(visitor_id: str) -> None:
    with pytest.raises(InvalidGoal, match="well-formed flowsery visitor id"):
        Goal.create(FLOWSERY, "signup", visitor_id=visitor_id)


def test_body_fields_per_provider() -> None:
    assert datafast("signup", session_id="s" + VISITOR, description="Form").body() == {
        "name": "signup",
        "datafast_visitor_id": VISITOR,
        "description": "Form",
    }  # DataFast's body has no session field
    assert Goal.create(FAURYA, "signup", visitor_id="v1", session_id="s1").body() == {
        "name": "signup",
        "faurya_visitor_id": "v1",
        "faurya_session_id": "s1",
    }
    assert Goal.create(
        FLOWSERY, "signup", visitor_id="v1", session_id="s1", timezone="Europe/Paris"
    ).body() == {
        "name": "signup",
        "visitorUid": "v1",
        "sessionUid": "s1",
        "timezone": "Europe/Paris",
    }


def test_description_is_datafast_only_and_timezone_flowsery_only() -> None:
    with pytest.raises(InvalidGoal, match="flowsery goals take no description"):
        Goal.create(FLOWSERY, "signup", description="x")
    with pytest.raises(InvalidGoal, match="datafast goals take no timezone"):
        datafast("signup", timezone="Europe/Paris")
    with pytest.raises(InvalidGoal, match="not an IANA time zone name"):
        Goal.create(FLOWSERY, "signup", timezone="Europe Paris")


# -- metadata -----------------------------------------------------------------------------------


def test_metadata_values_become_strings() -> None:
    goal = datafast(
        "purchase",
        metadata={
            "plan": "pro",
            "seats": 3,
            "price": 9.5,
            "whole": 2.0,
            "exact": Decimal("19.99"),
            "trial": True,
            "annual": False,
            "order": uuid.UUID(VISITOR),
            "day": dt.date(2026, 11, 23),
            "coupon": None,
        },
    )
    assert goal.metadata == {
        "plan": "pro",
        "seats": "3",
        "price": "9.5",
        "whole": "2",
        "exact": "19.99",
        "trial": "true",
        "annual": "false",
        "order": VISITOR,
        "day": "2026-11-23",
    }  # None means "not set": the key is left out


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({f"k{i}": "v" for i in range(11)}, "metadata has 11 keys (rule: at most 10 keys)"),
        ({"Plan": "pro"}, "invalid metadata key 'Plan'; did you mean 'plan'?"),
        ({"my key": "x"}, "did you mean 'my_key'?"),
        ({"k" * 65: "x"}, "invalid metadata key"),
        ({"": "x"}, "invalid metadata key ''"),
        ({1: "x"}, "invalid metadata key '1'"),
        ({"cart": {"a": 1}}, "metadata value for 'cart' is a dict"),
        ({"items": [1, 2]}, "metadata value for 'items' is a list"),
        ({"blob": b"x"}, "metadata value for 'blob' is a bytes"),
        ({"long": "x" * 256}, "metadata value for 'long' is 256 characters long"),
        ({"emoji": "\U0001f600" * 128}, "metadata value for 'emoji' is 256 characters long"),
        ({"html": "<b>" * 86}, "metadata value for 'html' is 258 characters long"),
    ],
)
def test_metadata_errors(metadata: dict[Any, Any], message: str) -> None:
    with pytest.raises(InvalidGoal, match="rule:") as info:
        datafast("signup", metadata=metadata)
    assert message in str(info.value)
    assert info.value.field == "metadata"


def test_metadata_must_be_a_mapping() -> None:
    with pytest.raises(InvalidGoal, match="metadata must be a mapping"):
        datafast("signup", metadata=[("a", "b")])


def test_ten_keys_and_255_characters_are_fine() -> None:
    metadata = {f"k{i}": "v" * 255 for i in range(10)}
    assert datafast("signup", metadata=metadata).metadata == metadata


def test_truncation_is_opt_in_and_never_splits_a_character() -> None:
    goal = datafast("signup", metadata={"note": "x" * 300}, truncate_metadata=True)
    assert goal.metadata == {"note": "x" * 255}
    emoji = datafast("signup", metadata={"e": "\U0001f600" * 200}, truncate_metadata=True)
    assert emoji.metadata == {"e": "\U0001f600" * 127}


def test_lengths_count_utf16_units_as_the_api_does() -> None:
    assert datafast("signup", metadata={"e": "\U0001f600" * 127 + "x"}).metadata is not None
    assert datafast("signup", metadata={"e": "é" * 255}).metadata == {"e": "é" * 255}


@pytest.mark.parametrize(
    ("value", "cleaned"),
    [
        ("plain text", "plain text"),
        ("<b>bold</b> move", "bold move"),
        ("hi<script>alert(1)</script>!", "hi!"),
        ("<img src=x onerror=alert(1)>", ""),
        ("a onclick=steal() b", "a steal() b"),
        ("javascript:alert(1)", "alert(1)"),
        ("javajavascript:script:alert(1)", "alert(1)"),
        ("Tom & \"Jerry\" 'cat'", "Tom  Jerry cat"),
        ("x=1 condition=ok", "x=1 condition=ok"),
        ("12:30", "12:30"),
    ],
)
def test_html_and_script_are_removed_from_values(value: str, cleaned: str) -> None:
    assert sanitize_value(value) == cleaned
    assert datafast("signup", metadata={"v": value}).metadata == ({"v": cleaned})


# -- the fake API accepts what the client lets through -------------------------------------------

ACCEPTED = [
    ("datafast", {"name": "Newsletter Signup", "metadata": {"plan": "pro", "seats": 2}}),
    ("datafast", {"name": "checkout:done", "description": "Form <b>submit</b>"}),
    ("datafast", {"name": "x", "metadata": {f"k{i}": "v" * 255 for i in range(10)}}),
    ("datafast", {"name": "signup", "metadata": {"v": "<script>x</script>a & b"}}),
    ("datafast", {"name": "signup", "metadata": {"e": "\U0001f600" * 127 + "x", "n": 2.0}}),
    ("faurya", {"name": "signup", "session_id": "sess-1", "metadata": {"trial": True}}),
    ("flowsery", {"name": "signup", "session_id": "s1", "timezone": "Europe/Paris"}),
    ("flowsery", {"name": "anonymous-goal", "visitor_id": None}),
]


@pytest.mark.parametrize(("provider_name", "fields"), ACCEPTED)
def test_what_the_client_accepts_the_fake_api_accepts(
    fake_api: FakeAPIServer, provider_name: str, fields: dict[str, Any]
) -> None:
    provider = get_provider(provider_name)
    fields = dict(fields)
    if "visitor_id" not in fields:
        fields["visitor_id"] = fake_api.add_pageview(provider_name)
    goal = Goal.create(provider, fields.pop("name"), **fields)
    key = {"datafast": "df_key", "faurya": "fy_key", "flowsery": "flow_key"}[provider_name]
    response = httpx.post(
        fake_api.api_url(provider_name) + provider.goals_path,
        json=goal.body(),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    [stored] = fake_api.goals
    assert stored["name"] == goal.name
    assert stored["visitor_id"] == goal.visitor_id
    assert stored["metadata"] == dict(goal.metadata or {})


def test_lone_surrogates_and_huge_numbers_are_invalid_goals() -> None:
    with pytest.raises(InvalidGoal, match="lone surrogate"):
        datafast("signup", metadata={"note": "ok \ud800"})
    with pytest.raises(InvalidGoal, match="lone surrogate"):
        datafast("signup", description="\udfff")
    with pytest.raises(InvalidGoal, match="number too long"):
        datafast("signup", metadata={"n": 10**5000})


# -- the fast paths give the same answers --------------------------------------------------------


def test_a_name_known_for_one_provider_is_still_checked_for_another() -> None:
    assert datafast("Newsletter Signup").name == "newsletter_signup"
    assert datafast("Newsletter Signup").name == "newsletter_signup"  # known now
    with pytest.raises(InvalidGoal, match="invalid goal name"):
        Goal.create(FLOWSERY, "Newsletter Signup", visitor_id="vid_1")
    with pytest.raises(InvalidGoal, match="reserved"):
        datafast("identify")
    with pytest.raises(InvalidGoal, match="reserved"):
        datafast("identify")  # refused names are never remembered


def test_a_provider_with_the_same_name_but_other_rules_gets_its_own_check() -> None:
    import dataclasses

    strict = dataclasses.replace(DATAFAST, reserved_names=frozenset({"signup"}))
    assert datafast("signup").name == "signup"
    with pytest.raises(InvalidGoal, match="reserved"):
        Goal.create(strict, "signup", visitor_id=VISITOR)


def test_a_str_subclass_name_is_checked_every_time() -> None:
    class Name(str):
        pass

    assert datafast(Name("Sign Up")).name == "sign_up"
    assert type(datafast(Name("Sign Up")).name) is str


def test_plain_values_skip_cleaning_but_others_are_still_cleaned() -> None:
    class Shouting(int):
        def __str__(self) -> str:
            return "<b>42</b>"

    goal = datafast(
        "signup",
        metadata={"plan": "Pro2", "n": 7, "word": "héllo", "tag": "<i>x</i>", "s": Shouting(1)},
    )
    assert goal.metadata == {"plan": "Pro2", "n": "7", "word": "héllo", "tag": "x", "s": "42"}
