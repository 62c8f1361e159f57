"""The simulator's catalog: at least one service of each of the protocol's 13 types.

The entries vary on purpose the way real panels do: some carry ``dripfeed`` and ``desc`` and some
leave them out, rates have up to 5 decimals, and cancel/refill support differs. Other tests rely on
service "1" (Default, cancelable) and service "2" (Default, not cancelable); keep them stable.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CatalogService:
    service_id: str
    name: str
    type: str
    category: str
    rate: str
    min: int
    max: int
    refill: bool
    cancel: bool
    # None means the panel leaves the key out of its reply altogether.
    dripfeed: bool | None = None
    desc: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The entry as a panel sends it: numeric id, numbers as strings, optional keys omitted."""
        wire: dict[str, Any] = {
            "service": int(self.service_id),
            "name": self.name,
            "type": self.type,
            "category": self.category,
            "rate": self.rate,
            "min": str(self.min),
            "max": str(self.max),
            "refill": self.refill,
            "cancel": self.cancel,
        }
        if self.dripfeed is not None:
            wire["dripfeed"] = self.dripfeed
        if self.desc is not None:
            wire["desc"] = self.desc
        return wire


_IG_FOLLOWERS = "Instagram Followers"
_IG_LIKES = "Instagram Likes"
_IG_COMMENTS = "Instagram Comments"
_IG_MENTIONS = "Instagram Mentions"

# One row per service: id, name, type, category, rate, min, max, refill, cancel, dripfeed, desc.
# fmt: off
CATALOG: tuple[CatalogService, ...] = tuple(CatalogService(*row) for row in (
    ("1", "Instagram Followers [Real, 30-day refill]", "Default", _IG_FOLLOWERS,
     "0.90", 10, 100000, True, True, True, "Real-looking accounts, 5-10k per day."),
    ("2", "Instagram Followers [Cheap, no refill]", "Default", _IG_FOLLOWERS,
     "0.45", 10, 50000, False, False, None, None),
    ("3", "Instagram Likes [Instant]", "Default", _IG_LIKES,
     "0.12345", 20, 200000, False, True, False, ""),
    ("4", "Instagram Likes Package [1000 likes]", "Package", _IG_LIKES,
     "4.50", 1, 1, False, False, False, None),
    ("5", "Instagram Custom Comments", "Custom Comments", _IG_COMMENTS,
     "12.00", 5, 1000, False, True, None, "One comment per line."),
    ("6", "Instagram Mentions [with hashtags]", "Mentions with Hashtags", _IG_MENTIONS,
     "3.20", 100, 50000, False, False, None, None),
    ("7", "Instagram Mentions [custom list]", "Mentions Custom List", _IG_MENTIONS,
     "5.00", 10, 10000, False, False, False, None),
    ("8", "Instagram Mentions [hashtag]", "Mentions Hashtag", _IG_MENTIONS,
     "2.75", 100, 100000, False, True, None, None),
    ("9", "Instagram Mentions [user followers]", "Mentions User Followers", _IG_MENTIONS,
     "2.90", 100, 100000, False, False, None, None),
    ("10", "Instagram Mentions [media likers]", "Mentions Media Likers", _IG_MENTIONS,
     "3.10", 100, 100000, False, False, None, None),
    ("11", "Instagram Auto-Likes [subscription]", "Subscriptions", _IG_LIKES,
     "0.60", 50, 10000, False, True, None, "Likes on every new post."),
    ("12", "Instagram Comment Likes", "Comment Likes", _IG_COMMENTS,
     "1.23456", 20, 20000, False, False, None, None),
    ("13", "Instagram Story Poll Votes", "Poll", "Instagram Story",
     "0.80", 100, 50000, False, True, False, None),
    ("14", "Instagram Comment Replies", "Comment Replies", _IG_COMMENTS,
     "15.00", 1, 500, False, False, None, None),
    ("15", "Telegram Members [invites from groups]", "Invites from Groups", "Telegram Members",
     "7.50", 100, 20000, True, False, None, None),
    ("16", "TikTok Views [fast]", "Default", "TikTok Views",
     "0.01234", 100, 10000000, False, True, True, None),
    ("17", "TikTok Followers [refill 30 days]", "Default", "TikTok Followers",
     "2.10", 50, 100000, True, True, False, "Start 0-1h."),
    ("18", "YouTube Views [retention 1-3 min]", "Default", "YouTube Views",
     "1.75", 500, 1000000, True, False, None, None),
    ("19", "Telegram Channel Members", "Default", "Telegram Members",
     "1.10", 50, 50000, True, True, True, None),
))
# fmt: on

SERVICES_BY_ID: dict[str, CatalogService] = {entry.service_id: entry for entry in CATALOG}
