"""Campaign dispatcher: a shop's newsletter by email and promotions by SMS.

campaign file -> Campaign + Delivery rows (database) -> delivery ids (Dramatiq) ->
worker: consent check at send time -> render -> transport -> record.

Importing the package imports nothing else: `dispatcher --help` stays fast. Import
what you need from its module (`dispatcher.errors`, `dispatcher.settings`, ...).
"""

__version__ = "0.1.0"
