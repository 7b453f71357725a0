"""Forms of the two-factor pages. Codes are typed, so the fields ask phones for the digit keyboard and let the
browser or password manager offer a one-time code."""

from django import forms

CODE_ATTRS = {
    "inputmode": "numeric",
    "autocomplete": "one-time-code",
    "autocapitalize": "off",
    "spellcheck": "false",
}


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Authentication code",
        max_length=32,
        help_text="The 6-digit code from your authenticator app, or one of your 10-digit backup codes.",
        widget=forms.TextInput(attrs={**CODE_ATTRS, "autofocus": True}),
    )


class ConfirmDeviceForm(forms.Form):
    code = forms.CharField(
        label="Code from the app",
        max_length=32,
        help_text="The 6-digit code the app shows for gpucloud now.",
        widget=forms.TextInput(attrs=CODE_ATTRS),
    )
    revoke_tokens = forms.BooleanField(
        label="Also revoke all my API tokens",
        required=False,
        help_text="In every tenant. Do this if someone else may have had your password: tokens do not ask "
        "for a code. Your other sessions are signed out either way.",
    )


class DisableForm(forms.Form):
    code = forms.CharField(
        label="Current code or backup code",
        max_length=32,
        required=False,
        widget=forms.TextInput(attrs=CODE_ATTRS),
    )
    password = forms.CharField(
        label="Or your password",
        max_length=128,
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
