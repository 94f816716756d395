"""thrifty-jetson: Jetson GPU devfreq, EMC and nvpmodel knobs and INA3221 power-rail meters."""
