"""The review page in headless Chromium, against a real server started by ``serve``.

Driven the way a user would: open the printed address, go to a person, answer with one
key on the focused card, name, merge and hide groups, open a photo, search by photo.
Every answer is then checked through the JSON API (what the finder will report), every
page is screenshotted (tests/screenshots/review-*.png) and no test may leave a console
error or an uncaught exception behind. The album, its face index and the server helpers
come from test_review_api.py: each test has its own copy of the index.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_review_api import (
    HOSTILE_NAME,
    Album,
    Served,
    build_album,
    cluster_of,
    copy_index,
    open_review,
    served,
)
from testdata import celebrity_dataset


@pytest.fixture(scope="session")
def album(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Album:
    """The API tests' album (built once per session, whichever module asks first)."""
    return build_album(tmp_path_factory, models_dir)


@pytest.fixture
def api(album: Album, tmp_path: Path) -> Iterator[Served]:
    """A server over a fresh copy of the album's index, as ``finder.py --review`` runs."""
    with open_review(album, copy_index(album, tmp_path / "index")) as review, \
            served(review) as running:
        yield running


def open_page(page, api: Served, where: str = "") -> None:
    """Open the printed address (token in it), then ``where`` (a #/ route)."""
    page.goto(api.printed)
    page.locator("#summary").filter(has_text="files in").wait_for()
    if where:
        page.goto(api.printed + where)


def shoot(page, screenshot, name: str) -> None:
    """A screenshot of the whole page with every picture in it: lazy pictures below the
    fold are loaded first (a full-page screenshot does not scroll), then back to the top."""
    page.evaluate("() => { for (const img of document.images) img.loading = 'eager'; }")
    page.wait_for_function("() => [...document.images].every(img => img.complete)")
    page.evaluate("() => window.scrollTo(0, 0)")
    screenshot(page, name)


def wait_focus(page, face: str) -> None:
    """Wait until the card (or face row) of ``face`` has the focus.

    A function, not an expression: Playwright evaluates expressions with eval(), which
    the page's CSP forbids (as it should)."""
    page.wait_for_function("face => document.activeElement?.dataset.face === face", arg=face)


def test_no_cookie_people_and_answers_by_key(page, console_errors, screenshot,
                                             api: Served) -> None:
    """The page works under the printed address and leaves no cookie behind (one of
    127.0.0.1 would be sent to every local server); on a person's page, y confirms the
    focused face and moves on, n rejects one; the API agrees."""
    open_page(page, api)
    assert page.url.startswith(api.printed)
    assert page.context.cookies() == [] and page.evaluate("document.cookie") == ""
    table = page.locator("table.people")
    table.wait_for()
    assert table.locator("tbody tr").count() == 2
    assert page.locator("#summary").inner_text().startswith(
        f"{api.json('GET', '/api/summary')['files']} files in ")
    shoot(page, screenshot, "review-people")

    page.get_by_role("link", name="Ben", exact=True).click()
    page.wait_for_url("**/#/person/Ben")
    cards = page.locator("li.card")
    cards.first.wait_for()
    before = api.json("GET", "/api/matches?person=Ben")["matches"]
    assert cards.count() == len(before)
    assert cards.locator(".path").all_inner_texts() == [m["path"] for m in before]
    first, second = (m["face"] for m in before[:2])

    cards.first.focus()
    page.keyboard.press("y")
    page.locator(f'li.card.confirmed[data-face="{first}"]').wait_for()
    wait_focus(page, second)
    # A yes joins the references: the others may be ordered anew; the next is the
    # card after this one as shown now.
    shown = cards.evaluate_all("cards => cards.map(card => card.dataset.face)")
    third = shown[shown.index(second) + 1]
    page.keyboard.press("n")
    page.locator(f'li.card[data-face="{second}"]').wait_for(state="detached")
    wait_focus(page, third)
    assert page.locator(f'li.card.confirmed[data-face="{first}"] .badge').inner_text() \
        == "✓ Confirmed"
    shoot(page, screenshot, "review-person")

    after = {m["face"]: m for m in api.json("GET", "/api/matches?person=Ben")["matches"]}
    assert after[first]["confirmed"] and second not in after
    page.get_by_role("button", name="Look again").click()  # search again: answers hold
    page.wait_for_function("() => document.getElementById('refresh').textContent "
                           "=== 'Look again' && !document.getElementById('refresh').disabled")
    page.locator(f'li.card.confirmed[data-face="{first}"]').wait_for()
    assert page.locator(f'li.card[data-face="{second}"]').count() == 0
    photo = api.json("GET", f"/api/photos/{second.split('-')[0]}")
    assert photo["faces"][0]["rejected"] == ["Ben"]
    assert not console_errors, console_errors


def test_maybe_page_yes_then_check_these_no(page, console_errors, screenshot,
                                           api: Served) -> None:
    """The first suggestion has the focus at once; y adds the photo, and on "check
    these" n rejects a found face."""
    maybe = api.json("GET", "/api/suggestions?person=Ben&kind=maybe")["suggestions"]
    assert maybe
    open_page(page, api, "#/maybe/Ben")
    page.locator("li.card").first.wait_for()
    wait_focus(page, maybe[0]['face'])
    assert page.locator("li.card .badge").first.inner_text() == "Maybe"
    shoot(page, screenshot, "review-maybe")
    page.keyboard.press("y")
    page.locator(f'li.card[data-face="{maybe[0]["face"]}"]').wait_for(state="detached")
    found = {m["face"]: m for m in api.json("GET", "/api/matches?person=Ben")["matches"]}
    assert found[maybe[0]["face"]]["confirmed"]

    page.get_by_role("link", name="Check these", exact=False).click()
    page.wait_for_url("**/#/maybe/Ben?kind=both")
    both = api.json("GET", "/api/suggestions?person=Ben&kind=both")["suggestions"]
    wait_focus(page, both[0]['face'])
    assert page.locator("li.card").count() == len(both)
    shoot(page, screenshot, "review-check-these")
    page.keyboard.press("n")
    page.locator(f'li.card[data-face="{both[0]["face"]}"]').wait_for(state="detached")
    if len(both) > 1:
        wait_focus(page, both[1]['face'])
    photo = api.json("GET", f"/api/photos/{both[0]['file']}")
    assert "Ben" in photo["faces"][0]["rejected"]
    assert not console_errors, console_errors


def test_who_else_name_merge_hide(page, console_errors, screenshot, api: Served,
                                  album: Album) -> None:
    """Name the Madonna group, merge two others, hide the merged one: all through the
    page, all seen by the API."""
    madonna = cluster_of(api, album, "madonna")
    open_page(page, api, "#/others")
    groups = page.locator("li.cluster")
    groups.first.wait_for()
    clusters = api.json("GET", "/api/clusters")["clusters"]
    assert groups.count() == len(clusters) >= 3
    shoot(page, screenshot, "review-clusters")

    field = page.get_by_label("Name", exact=True).and_(page.locator(f"#name-{madonna['id']}"))
    field.fill("Madonna")
    field.press("Enter")
    page.locator(f'li.cluster[data-cluster="{madonna["id"]}"]').wait_for(state="detached")
    people = {p["name"]: p for p in api.json("GET", "/api/people")["people"]}
    assert people["Madonna"]["confirmed"] == madonna["size"]

    left = api.json("GET", "/api/clusters")["clusters"]
    assert len(left) >= 2
    # An answer the API refuses: its reason on one line at the top, nothing changed.
    page.locator(f"#name-{left[0]['id']}").fill("AC/DC")
    page.locator(f"#name-{left[0]['id']}").press("Enter")
    error = page.locator("#error")
    error.wait_for()
    assert error.inner_text() == "person: a name cannot contain '/' (400)"
    assert "/" not in {p["name"] for p in api.json("GET", "/api/people")["people"]}
    for _ in range(100):  # Chromium logs the refused request itself, in its own time
        refused = [e for e in console_errors if "status of 400" in e]
        if refused:
            break
        page.wait_for_timeout(20)
    assert len(refused) == 1, console_errors
    console_errors.remove(refused[0])

    merge = page.get_by_role("button", name="Merge the 2 selected groups")
    assert merge.is_disabled()
    page.locator(f"#pick-{left[0]['id']}").check()
    page.locator(f"#pick-{left[1]['id']}").check()
    merge.click()
    error.wait_for(state="hidden")  # the next answer that works clears it
    page.locator(f'li.cluster[data-cluster="{left[1]["id"]}"]').wait_for(state="detached")
    merged = {c["id"]: c for c in api.json("GET", "/api/clusters")["clusters"]}
    assert merged[left[0]["id"]]["size"] == left[0]["size"] + left[1]["size"]

    page.get_by_role("button", name=f"Hide group {left[0]['id']}: strangers").click()
    page.locator(f'li.cluster[data-cluster="{left[0]["id"]}"]').wait_for(state="detached")
    hidden = api.json("GET", "/api/clusters?hidden=1")["clusters"]
    assert [c["hidden"] for c in hidden if c["id"] == left[0]["id"]] == [True]
    page.get_by_role("link", name="Hidden groups").click()
    page.locator(f'li.cluster[data-cluster="{left[0]["id"]}"]').wait_for()
    shoot(page, screenshot, "review-clusters-hidden")
    assert not console_errors, console_errors


def test_photo_page_and_search_by_photo(page, console_errors, screenshot, api: Served,
                                        album: Album) -> None:
    """A photo with its faces outlined and named, answered from there; a file name made
    of markup shown as text; an upload's faces with the nearest people and faces."""
    ben = api.json("GET", "/api/matches?person=Ben")["matches"][0]
    open_page(page, api, f"#/photo/{ben['file']}")
    label = page.locator(".frame .box .label")
    label.first.wait_for()
    assert label.all_inner_texts() == ["1 Ben"]
    assert page.locator("main h2").inner_text() == ben["path"]
    box = page.locator(".frame .box").first.bounding_box()
    frame = page.locator(".frame").first.bounding_box()
    x, y, w, h = ben["box"]
    assert box and frame
    width, height = ben["size"]  # the outline sits where the face is, in any size
    assert abs((box["x"] - frame["x"]) / frame["width"] - x / width) < 0.02
    assert abs((box["y"] - frame["y"]) / frame["height"] - y / height) < 0.02
    assert abs(box["width"] / frame["width"] - w / width) < 0.02
    assert abs(box["height"] / frame["height"] - h / height) < 0.02
    shoot(page, screenshot, "review-photo")
    page.locator("li.face-row").first.focus()
    page.keyboard.press("y")
    page.locator("li.face-row.confirmed").wait_for()
    assert page.locator(".frame .box .label").all_inner_texts() == ["1 Ben ✓"]
    assert api.json("GET", f"/api/photos/{ben['file']}")["faces"][0]["decided"] == "Ben"

    hostile = (album.photos / "party" / HOSTILE_NAME).read_bytes()  # its id: the nearest
    file = api.json("POST", "/api/search?k=1", hostile)["faces"][0]["faces"][0]["file"]
    page.goto(f"{api.printed}#/photo/{file}")
    page.wait_for_function("name => document.querySelector('main h2')?.textContent === name",
                           arg=f"party/{HOSTILE_NAME}")
    assert page.locator('img[src="x"]').count() == 0
    assert page.title() == f"party/{HOSTILE_NAME} · Face finder"

    page.get_by_role("link", name="Search by photo").click()
    upload = sorted((celebrity_dataset() / "train" / "elton_john").glob("*.jpg"))[6]
    page.get_by_label("A photo of someone:").set_input_files(str(upload))
    answer = page.locator("section.answer")
    answer.first.wait_for()
    assert answer.count() == 1
    assert answer.locator("ul").first.locator("li").first.inner_text().startswith("Elton ")
    shoot(page, screenshot, "review-search")
    assert not console_errors, console_errors
