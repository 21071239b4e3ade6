"""Link rewriting at send time: tracked links, the open pixel and one-click unsubscribe.

``transform`` (the ``MessageTransform``) <- ``plan`` (once per submission,
spliced per recipient) <- ``mime`` (the text parts), ``transfer`` (transfer
encodings, charsets), ``html`` and ``text`` (the slots of a part),
``headers`` (List-Unsubscribe). All pure.
"""

from tracking_edge.rewriting.transform import PlanCache, TrackingTransform, TrackingUrls

__all__ = ["PlanCache", "TrackingTransform", "TrackingUrls"]
