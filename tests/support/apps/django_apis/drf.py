"""Django REST framework views tracking goals each way goaltrack offers.

- ``SignupView.post``: ``track_goal(request, ...)`` with DRF's ``Request``;
- ``PurchaseView.post``: ``@track_goal`` on an ``APIView`` method, metadata from ``request.data``;
  a ``ValidationError`` (DRF answers 400) tracks nothing;
- ``AccountViewSet``: ``@track_goal`` on a viewset's ``create`` and on an ``@action``, metadata
  from the URL's ``pk``;
- ``newsletter``: an ``@api_view`` function;
- ``PingView``: the decorator on the class (its ``dispatch``), counting GETs.
"""

from __future__ import annotations

from typing import Any

from rest_framework import viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from goaltrack.django import track_goal


class SignupView(APIView):
    def post(self, request: Request) -> Response:
        queued = track_goal(request, "signup", {"plan": request.data.get("plan", "free")})
        return Response({"queued": queued}, status=201)


def purchase_metadata(request: Request, response: Response) -> dict[str, Any]:
    return {"plan": request.data["plan"], "status": response.status_code}


class PurchaseView(APIView):
    @track_goal("purchase", metadata=purchase_metadata)
    def post(self, request: Request) -> Response:
        if request.data.get("plan") not in ("pro", "team"):
            raise ValidationError({"plan": "unknown plan"})
        return Response({"plan": request.data["plan"]}, status=201)


class AccountViewSet(viewsets.ViewSet):
    @track_goal("account_created")
    def create(self, request: Request) -> Response:
        if not request.data.get("name"):
            return Response({"name": "required"}, status=400)
        return Response({"id": 7}, status=201)

    @action(detail=True, methods=["post"])
    @track_goal("upgrade", metadata=lambda request, response, pk: {"account": pk})
    def upgrade(self, request: Request, pk: str | None = None) -> Response:
        return Response({"account": pk, "upgraded": True})


@api_view(["POST"])
@track_goal("newsletter", metadata={"list": "weekly"})
def newsletter(request: Request) -> Response:
    return Response({"subscribed": True})


@track_goal("ping", methods=["GET"])
class PingView(APIView):
    def get(self, request: Request) -> Response:
        return Response({"pong": True})
