"""``/api/auth/token/``: scripts trade a username and password for an API token (POST) and give it
back (DELETE).

Per client address the endpoint is throttled (DRF scope ``auth``); per username the
failed-password lockout of ``reviewer.services.access`` applies, so a locked-out username gets
429 with ``Retry-After`` even with the right password. Each sign-in issues a new token (the old
one stops working); tokens expire after ``SPINEREVIEW_API_TOKEN_TTL_S``.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import NotAuthenticated, Throttled
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from reviewer.services import access


class TokenApi(APIView):
    """The one endpoint open to anonymous callers (it is how they stop being anonymous)."""

    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"
    InputSerializer = AuthTokenSerializer

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expires_at = serializers.DateTimeField()

        class Meta:
            ref_name = "TokenResponse"

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: Request) -> Response:
        """Sign in with username and password; returns a new token and when it expires."""
        remaining = access.login_lockout_remaining(username=str(request.data.get("username", "")))
        if remaining:
            raise Throttled(wait=remaining, detail="Too many failed sign-ins for this account; try again later.")
        data = self.InputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        token = access.issue_api_token(user=data.validated_data["user"])
        return Response({"token": token.key, "expires_at": access.api_token_expires_at(token)})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request) -> Response:
        """Sign out: the caller's token stops working at once."""
        if not request.user.is_authenticated:
            raise NotAuthenticated()
        access.revoke_api_tokens(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
