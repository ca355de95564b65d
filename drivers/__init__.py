"""Modem drivers, the GSM codecs and the simulated modem.

This package never imports `edgegw`: the gateway sees a modem only through `drivers.modem`.
"""
