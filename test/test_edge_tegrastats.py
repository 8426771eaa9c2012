"""tegrastats parser on real lines.

Sources of the lines (copied verbatim, public repositories):
* ORIN_IDLE / ORIN_BUSY: vivh3/edge-inference-pipeline, tests/test_tegrastats.py,
  "copied from a real log on a Jetson Orin Nano Super, JetPack 6.2 / L4T 36.4.3".
* XAVIER: rbonghi/jetson_stats, tests/tegrastats (emulator replaying a real
  Jetson AGX Xavier line; rails without the "mW" unit).
* NANO: the same file's Jetson Nano line (POM_5V_IN rail naming).
"""

import pytest

from fskd_ros.edge.tegrastats import (
    TegrastatsSampler,
    dynamic_energy_mj,
    mean_total_mw,
    parse_line,
)

ORIN_IDLE = (
    "10-08-2026 04:38:21 RAM 1343/7620MB (lfb 157x4MB) SWAP 165/3810MB (cached 3MB) "
    "CPU [0%@1497,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 15%@204 "
    "GR3D_FREQ 0%@[305] NVDEC off NVJPG off VIC off OFA off APE 200 "
    "cpu@48.562C soc2@46.593C soc0@48.625C gpu@49.625C tj@49.312C soc1@47.937C "
    "VDD_IN 5251mW/8535mW VDD_CPU_GPU_CV 512mW/1944mW VDD_SOC 2720mW/3659mW"
)
ORIN_BUSY = (
    "10-08-2026 04:35:02 RAM 6712/7620MB (lfb 12x4MB) SWAP 369/3810MB (cached 8MB) "
    "CPU [38%@1497,2%@729,1%@729,0%@729,1%@729,0%@729] EMC_FREQ 61%@2133 "
    "GR3D_FREQ 99%@[612] NVDEC off NVJPG off VIC off OFA off APE 200 "
    "cpu@57.125C soc2@55.093C soc0@56.625C gpu@58.625C tj@58.312C soc1@55.937C "
    "VDD_IN 16321mW/11204mW VDD_CPU_GPU_CV 7104mW/4944mW VDD_SOC 3120mW/3659mW"
)
XAVIER = (
    "RAM 4722/7844MB (lfb 1x512kB) CPU [55%@2035,14%@2034,27%@2034,55%@2035,47%@2035,45%@2035] "
    "SWAP 149/1024MB (cached 7MB) EMC_FREQ 2%@1866 GR3D_FREQ 42%@1300 APE 150 MTS fg 0% bg 0% "
    "BCPU@-45C MCPU@-45C GPU@-51C PLL@45C AO@47.5C Tboard@37C Tdiode@46.75C PMIC@100C "
    "thermal@46.4C VDD_IN 14025/14416 VDD_CPU 2209/2538 VDD_GPU 6854/6903 VDD_SOC 1371/1370 "
    "VDD_WIFI 19/19 NVENC 716 NVDEC 716 VDD_DDR 2702/2702"
)
NANO = (
    "RAM 1180/3965MB (lfb 1x2MB) SWAP 149/1024MB (cached 7MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [30%@1036,33%@1036,28%@1036,26%@1036] EMC_FREQ 10%@1600 GR3D_FREQ 0%@76 NVENC 716 "
    "NVDEC 716 APE 25 PLL@57C CPU@60.5C PMIC@100C GPU@59C AO@65C thermal@59.75C "
    "POM_5V_IN 4520/4680 POM_5V_GPU 0/0 POM_5V_CPU 1078/1205"
)


def test_orin_line_takes_instant_vdd_in_not_running_average():
    sample = parse_line(ORIN_BUSY)
    assert sample.total_mw == 16321
    assert sample.rails_avg_mw["VDD_IN"] == 11204
    assert sample.rails_mw == {"VDD_IN": 16321, "VDD_CPU_GPU_CV": 7104, "VDD_SOC": 3120}
    assert sample.gpu_percent == 99
    assert sample.ram_used_mb == 6712
    assert sample.stamp == "10-08-2026 04:35:02"


def test_memory_fields_are_not_mistaken_for_rails():
    sample = parse_line(ORIN_IDLE)
    assert "RAM" not in sample.rails_mw and "SWAP" not in sample.rails_mw
    assert sample.total_mw == 5251


def test_older_formats():
    assert parse_line(XAVIER).total_mw == 14025
    assert parse_line(XAVIER).rails_mw["VDD_GPU"] == 6854
    nano = parse_line(NANO)
    assert nano.total_mw == 4520 and nano.rails_mw["POM_5V_CPU"] == 1078


def test_non_power_lines_are_ignored():
    assert parse_line("") is None
    assert parse_line("RAM 1343/7620MB (lfb 157x4MB) SWAP 165/3810MB (cached 3MB)") is None


def test_dynamic_energy_from_real_idle_and_busy():
    idle = mean_total_mw([parse_line(ORIN_IDLE)] * 3)
    busy = mean_total_mw([parse_line(ORIN_BUSY)] * 2)
    # (16321 - 5251) mW x 2.6 ms = 28782 uJ = 28.78 mJ
    assert dynamic_energy_mj(busy, idle, 2.6) == pytest.approx(28.782, rel=1e-6)
    assert dynamic_energy_mj(idle, busy, 2.6) == 0.0  # never negative


def test_sampler_reads_a_tegrastats_like_process(tmp_path):
    script = tmp_path / "fake_tegrastats.sh"
    script.write_text("#!/bin/sh\nwhile true; do echo '%s'; sleep 0.02; done\n" % ORIN_BUSY)
    script.chmod(0o755)
    with TegrastatsSampler(command=[str(script)]) as sampler:
        assert sampler.wait_for_samples(3, timeout=5)
        samples = sampler.since(0.0)
    assert mean_total_mw(samples) == 16321
