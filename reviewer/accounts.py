"""The sign-in page and what signing out does beyond the session.

The page is Django's ``LoginView`` with one difference: a username locked out after too many
wrong passwords (``reviewer.services.access``) gets a page that says so, with status 429, instead
of the usual "wrong username or password" (which would invite more guesses). Signing out of the
web app also deletes the user's API token, so nothing issued to that user outlives the sign-out.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth import user_logged_out
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView as DjangoLoginView
from django.dispatch import receiver
from django.http import HttpResponse

from reviewer.services import access


class LockoutAuthenticationForm(AuthenticationForm):
    locked_out_s = 0

    def clean(self):
        username = self.cleaned_data.get("username")
        if username:
            self.locked_out_s = access.login_lockout_remaining(username=username)
            if self.locked_out_s:
                minutes = (self.locked_out_s + 59) // 60
                raise forms.ValidationError(
                    f"Too many failed sign-ins for this account. Try again in {minutes} minute(s).",
                    code="locked_out",
                )
        return super().clean()


class LoginView(DjangoLoginView):
    form_class = LockoutAuthenticationForm

    def form_invalid(self, form: LockoutAuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if form.locked_out_s:
            response.status_code = 429
            response["Retry-After"] = str(form.locked_out_s)
        return response


@receiver(user_logged_out)
def _revoke_api_token_on_sign_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        access.revoke_api_tokens(user=user)
