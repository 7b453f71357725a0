from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, SetPasswordForm


class EmailAuthenticationForm(AuthenticationForm):
    username = forms.EmailField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}),
    )
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "The email address or the password is not correct.",
    }

    def clean_username(self) -> str:
        # Addresses are stored in lowercase (sign-up lowercases them); match them the same way here.
        return self.cleaned_data["username"].strip().lower()


class SignupForm(forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    full_name = forms.CharField(max_length=150, required=False)
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        min_length=10,
        max_length=128,
        help_text="At least 10 characters, not a common password and not similar to your email.",
    )


class AuditedSetPasswordForm(SetPasswordForm):
    """The password-reset form, writing through the service so the change is audited."""

    def save(self, commit: bool = True) -> Any:
        from apps.accounts.services import user_reset_password

        return user_reset_password(user=self.user, password=self.cleaned_data["new_password1"])
