"""Shared fixtures. Tests never talk to DDS peers outside this machine."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Isolated, local-only DDS for every test process and its children.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
if os.environ.get("ROS_DISTRO") == "humble":
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(20, 99)))
_profile_variable = ("FASTRTPS_DEFAULT_PROFILES_FILE" if os.environ.get("ROS_DISTRO") == "humble"
                     else "FASTDDS_DEFAULT_PROFILES_FILE")
os.environ.setdefault(_profile_variable, str(REPO_ROOT / "config" / "fastdds_shm_localhost.xml"))
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_set(name: str) -> Path:
    """A data set from ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent (shared test data lives beside the checkout)")
    return path


@pytest.fixture(scope="session")
def neu_cls() -> Path:
    return shared_set("neu-cls")


@pytest.fixture(scope="session")
def default_encoder() -> Path:
    from fskd_ros.core.encoder_file import default_encoder_path

    path = default_encoder_path()
    if not path.is_file():
        pytest.fail(f"the shipped encoder {path} is missing")
    return path
