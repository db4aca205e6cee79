from django import forms

from blog.models import Comment


class CommentForm(forms.ModelForm):
    # The column is unbounded; the form is not, so one visitor cannot post a novel.
    body = forms.CharField(
        label="Comment", max_length=5000, widget=forms.Textarea(attrs={"rows": 5})
    )

    class Meta:
        model = Comment
        fields = ["author_name", "body"]
        labels = {"author_name": "Your name"}
        widgets = {"author_name": forms.TextInput(attrs={"autocomplete": "name"})}
