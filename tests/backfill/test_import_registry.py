"""Two backfills of the same content at once agree on one as-of time, whichever commits first."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.import_registry import remember_as_of, remembered_as_of
from connector.store.sqlite_schema import inbox_path, migrate


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**40), min_size=2, max_size=4))
def test_concurrent_imports_of_one_content_share_the_first_as_of_time(candidates: list[int]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        migrate(inbox_path(data_dir))  # the store exists (its own first-open is the store's business)
        barrier = threading.Barrier(len(candidates))
        kept: list[int] = []
        errors: list[BaseException] = []

        def importer(as_of: int) -> None:
            barrier.wait()  # each on its own connection, all at once
            try:
                kept.append(remember_as_of(data_dir, "same-digest", as_of, "export.csv"))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=importer, args=(value,)) for value in candidates]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(kept) == len(candidates)
        assert len(set(kept)) == 1
        assert kept[0] in candidates
        assert remembered_as_of(data_dir, "same-digest") == kept[0]
        assert remembered_as_of(data_dir, "other-digest") is None
