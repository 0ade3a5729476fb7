"""The test helper that runs a check in a fresh Python reports a native crash as one failed test."""
import os
import signal

import pytest
from helpers import in_a_fresh_python


def crash():
    os.kill(os.getpid(), signal.SIGSEGV)


def crash_after_the_checks():
    print("checked", flush=True)
    os.kill(os.getpid(), signal.SIGSEGV)


def fail_with(message):
    raise AssertionError(message)


def succeed(path):
    with open(path, "w") as file:
        file.write("ran")


def test_a_crash_fails_only_the_test_and_names_the_signal():
    with pytest.raises(pytest.fail.Exception, match=r"crash\(\) died of SIGSEGV in its own process"):
        in_a_fresh_python(crash)


def test_a_failed_assertion_is_reported_with_its_message(tmp_path):
    with pytest.raises(pytest.fail.Exception, match=r"exited with 1(.|\n)*AssertionError: the views differ"):
        in_a_fresh_python(fail_with, "the views differ")
    in_a_fresh_python(succeed, str(tmp_path / "out"))
    assert (tmp_path / "out").read_text() == "ran"


def test_a_crash_after_every_check_is_an_expected_failure_naming_the_signal():
    with pytest.raises(pytest.xfail.Exception, match="every check passed, then crash_after_the_checks died of SIGSEGV"):
        in_a_fresh_python(crash_after_the_checks, checked_marker="checked")
    with pytest.raises(pytest.fail.Exception, match="died of SIGSEGV"):  # before the marker: a failure
        in_a_fresh_python(crash, checked_marker="checked")
