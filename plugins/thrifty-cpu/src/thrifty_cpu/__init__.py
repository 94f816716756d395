"""thrifty-cpu: Linux cpufreq knobs and the RAPL energy meter, over sysfs."""
