"""Offline face finder: find the people of reference/ in a photo collection.

Data flows one way: files -> decode -> detect -> align -> embed -> match -> report/copy.
"""

__version__ = "0.1.0"
