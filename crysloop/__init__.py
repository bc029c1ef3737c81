"""crysloop: closed-loop inverse design of crystalline materials."""

__version__ = "0.1.0"
