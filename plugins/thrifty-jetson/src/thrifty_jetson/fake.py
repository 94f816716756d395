"""Fake Jetson trees laid out like each generation's (see :mod:`thrifty_jetson.generations`),
for tests: GPU devfreq, EMC debugfs, cpufreq, INA3221 rails, nvpmodel.conf and a stand-in
``nvpmodel`` program that keeps its mode in ``var/lib/nvpmodel/status``."""

from __future__ import annotations

import sys
from pathlib import Path

from thrifty_cpu.fake import write_cpufreq_tree

from .generations import EMC_CLOCK, GENERATIONS, NVPMODEL_CONF

GPU_FREQS_HZ = (114_750_000, 420_750_000, 726_750_000, 1_032_750_000, 1_300_500_000)
EMC_RATES_KHZ = (204_000, 665_600, 2_133_000, 3_199_000)
CPUS = {"tx2": 6, "xavier": 8, "orin": 12, "jp6": 12}
RAILS = {  # label: (mV, mA) -> watts = mV * mA / 1e6
    "tx2": {"VDD_SYS_GPU": (19_000, 100), "VDD_SYS_SOC": (19_000, 50),
            "VDD_SYS_WIFI": (19_000, 5), "VDD_IN": (19_000, 400),
            "VDD_SYS_CPU": (19_000, 80), "VDD_SYS_DDR": (19_000, 60)},
    "xavier": {"GPU": (19_000, 200), "CPU": (19_000, 150), "SOC": (19_000, 100),
               "CV": (19_000, 10), "VDDRQ": (19_000, 40), "SYS5V": (5_000, 300)},
    "orin": {"VDD_IN": (5_000, 1_800), "VDD_CPU_GPU_CV": (5_000, 600), "VDD_SOC": (5_000, 500)},
    "jp6": {"VDD_IN": (5_000, 2_000), "VDD_CPU_GPU_CV": (5_000, 700), "VDD_SOC": (5_000, 550)},
}
NVPMODEL = """#!{python}
import sys
from pathlib import Path
status = Path({status!r})
if sys.argv[1:2] == ["-m"]:
    status.write_text("pmode:%04d fmode:default\\n" % int(sys.argv[2]))
else:
    mode = int(status.read_text().split()[0].split(":")[1])
    print("NV Power Mode: MODE_%d\\n%d" % (mode, mode))
"""


def _put(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


def write_jetson_tree(root: str | Path, generation: str) -> Path:
    root = Path(root)
    gen = GENERATIONS[generation]
    gpu = root / gen.gpu_devfreq
    for name, value in {"available_frequencies": " ".join(map(str, GPU_FREQS_HZ)),
                        "min_freq": GPU_FREQS_HZ[0], "max_freq": GPU_FREQS_HZ[-1],
                        "cur_freq": GPU_FREQS_HZ[0]}.items():
        _put(gpu / name, value)
    emc = root / EMC_CLOCK
    for name, value in {"rate": EMC_RATES_KHZ[-1] * 1000, "mrq_rate_locked": 0,
                        "min_rate": EMC_RATES_KHZ[0] * 1000,
                        "max_rate": EMC_RATES_KHZ[-1] * 1000}.items():
        _put(emc / name, value)
    if generation != "tx2":   # TX2 lists no rates: the knob falls back to min and max
        _put(root / "sys/kernel/debug/bpmp/debug/emc/possible_rates",
             " ".join(map(str, EMC_RATES_KHZ)))
    write_cpufreq_tree(root, cpus=CPUS[generation], freqs=(345_600, 1_190_400, 2_035_200))
    rails = list(RAILS[generation].items())
    for i, dev in enumerate(gen.ina_devices):
        for n, (label, (mv, ma)) in enumerate(rails[3 * i: 3 * i + 3]):
            if gen.ina_layout == "iio":
                _put(root / dev / f"rail_name_{n}", label)
                _put(root / dev / f"in_power{n}_input", mv * ma // 1000)
            else:
                hwmon = root / dev / f"hwmon/hwmon{i + 1}"
                _put(hwmon / f"in{n + 1}_label", label)
                _put(hwmon / f"in{n + 1}_input", mv)
                _put(hwmon / f"curr{n + 1}_input", ma)
    _put(root / NVPMODEL_CONF, "\n".join(f"< POWER_MODEL ID={m} NAME=MODE_{m} >\nCPU_ONLINE CORE_0 1"
                                         for m in range(4)))
    status = root / "var/lib/nvpmodel/status"
    _put(status, "pmode:0000 fmode:default")
    program = root / "usr/sbin/nvpmodel"
    _put(program, NVPMODEL.format(python=sys.executable, status=str(status)))
    program.chmod(0o755)
    return root


def rail_watts(generation: str) -> dict[str, float]:
    """What each fake rail draws, in watts (for tests to compare a reading with)."""
    layout = GENERATIONS[generation].ina_layout
    return {label: (mv * ma // 1000) / 1e3 if layout == "iio" else mv * ma / 1e6
            for label, (mv, ma) in RAILS[generation].items()}
