"""RADPEER reviews, their arbitration and the recomputation of stored edit distances.

Admins see all reviews, radiologists their own (and, on a blinded study, others' only after
signing). Researchers get the reviews as the pseudonymised ``reviews`` export table, not here
(reader names, comments, study ids)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewer import selectors
from reviewer.api.lists import ListApi, paginated_response
from reviewer.api.serializers import ReviewSerializer
from reviewer.models import Arbitration, Review
from reviewer.permissions import RolePermission
from reviewer.roles import Role
from reviewer.services import workflow

R = Role.RADIOLOGIST


class ReviewListApi(ListApi):
    """RADPEER reviews: admins see all, radiologists their own. Researchers get the reviews as
    the pseudonymised ``reviews`` export table, not here (reader names, comments, study ids)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}}
    queryset = Review.objects.none()
    filterset_fields = ["study", "radpeer", "in_scope"]
    ordering_fields = ["id", "study", "reader", "draft", "radpeer", "comment", "in_scope", "signed_revision",
                       "signed_at", "edit_distance"]  # fmt: skip
    OutputSerializer = ReviewSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        reviews = selectors.reviews_visible_to(request.user)
        return paginated_response(request=request, view=self, queryset=reviews, serializer_class=self.OutputSerializer)


class ReviewDetailApi(APIView):
    """RADPEER reviews: admins see all, radiologists their own. Researchers get the reviews as
    the pseudonymised ``reviews`` export table, not here (reader names, comments, study ids)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}}
    OutputSerializer = ReviewSerializer

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        review = get_object_or_404(selectors.reviews_visible_to(request.user), pk=pk)
        return Response(self.OutputSerializer(review).data)


class StudyReviewsApi(APIView):
    """The reviews of one study the caller may see."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}}
    OutputSerializer = ReviewSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        study = get_object_or_404(selectors.study_list(), pk=pk)
        reviews = selectors.reviews_visible_to(request.user, study.pk)
        return Response(self.OutputSerializer(reviews, many=True).data)


# --- arbitration ------------------------------------------------------------------------------


class ArbitrationSerializer(serializers.ModelSerializer):
    """An arbitration with the review it settles (list, detail and the answer to a resolution)."""

    study = serializers.IntegerField(source="review.study_id", read_only=True)
    radpeer = serializers.CharField(source="review.radpeer", read_only=True)
    review_comment = serializers.CharField(source="review.comment", read_only=True)
    arbiter = serializers.StringRelatedField()

    class Meta:
        model = Arbitration
        fields = ["id", "review", "study", "radpeer", "review_comment", "state", "arbiter", "decision", "comment",
                  "created_at", "resolved_at"]  # fmt: skip
        read_only_fields = fields


class ArbitrationListApi(ListApi):
    """RADPEER 2b/3a/3b reviews awaiting (or after) arbitration. Admins see all; a radiologist
    only other readers' reviews on studies they neither read nor are assigned to."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}}
    queryset = Arbitration.objects.none()
    ordering_fields = ["id", "review", "review__study_id", "review__radpeer", "review__comment", "state", "arbiter",
                       "decision", "comment", "created_at", "resolved_at"]  # fmt: skip
    OutputSerializer = ArbitrationSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        arbitrations = selectors.arbitrations_for(request.user, state=request.query_params.get("state", ""))
        return paginated_response(
            request=request, view=self, queryset=arbitrations, serializer_class=self.OutputSerializer
        )


class ArbitrationDetailApi(APIView):
    """RADPEER 2b/3a/3b reviews awaiting (or after) arbitration. Admins see all; a radiologist
    only other readers' reviews on studies they neither read nor are assigned to."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}}
    OutputSerializer = ArbitrationSerializer

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        arbitrations = selectors.arbitrations_for(request.user, state=request.query_params.get("state", ""))
        return Response(self.OutputSerializer(get_object_or_404(arbitrations, pk=pk)).data)


class ArbitrationResolveApi(APIView):
    """Settle an arbitration with the arbiter's RADPEER decision and comment."""

    permission_classes = [RolePermission]
    allowed_roles = {"POST": {R}}
    OutputSerializer = ArbitrationSerializer

    class InputSerializer(serializers.Serializer):
        decision = serializers.ChoiceField(choices=Review.Radpeer.choices)
        comment = serializers.CharField(allow_blank=False)

        class Meta:
            ref_name = "Resolve"

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        # 404 unless visible to this arbiter
        arbitrations = selectors.arbitrations_for(request.user, state=request.query_params.get("state", ""))
        arbitration = get_object_or_404(arbitrations, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        arbitration = workflow.resolve_arbitration(
            arbitration_id=arbitration.pk, arbiter=request.user, **data.validated_data
        )
        return Response(self.OutputSerializer(arbitration).data)


class RecomputeEditDistancesApi(APIView):
    """Recompute stored edit distances (all signed reviews, or the given ids). Admins."""

    permission_classes = [RolePermission]
    allowed_roles: dict[str, set[Role]] = {}  # admins only

    class InputSerializer(serializers.Serializer):
        reviews = serializers.ListField(child=serializers.IntegerField(), required=False, allow_null=True, default=None)

        class Meta:
            ref_name = "Recompute"

    @extend_schema(request=InputSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        n = workflow.recompute_edit_distances(review_ids=data.validated_data["reviews"], actor=request.user)
        return Response({"updated": n})
