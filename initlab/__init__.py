"""initlab: how does the way a network's weights are initialized change what happens when it trains?"""

__version__ = "0.1.0"
