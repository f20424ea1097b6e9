"""The simulator seam (``backend``), what every simulator builds (``scene``), and the MuJoCo and
PyBullet backends. Backends load lazily: importing this package imports neither simulator."""
