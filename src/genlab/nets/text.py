"""Recurrent nets for sentences: an encoder to a Gaussian (or a code), and a decoder that owns
its categorical likelihood over tokens, so the VAE, the latent GAN and the language model share it.

Token batches follow ``genlab.data.text``: ids ``[B, T]`` ending in ``<eos>``, padded with 0.
Both nets take ``num_classes`` (0: unconditional) for class-conditional models, as the image nets
do: the encoder reads the one-hot label beside the sentence's summary, q(z|x, y); the decoder's
code is z with the one-hot label appended (``GenerativeModule.condition``), so the label sets its
initial state and joins every input token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from genlab.data.tokenizers import BOS, EOS, PAD, UNK
from genlab.nets.image import one_hot
from genlab.utils.errors import GenlabError

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
EVAL_LOGITS = 1 << 24  # logits per slice when the decoder's likelihood is evaluated (64 MB in float32)


def _cell(cell: str) -> type[nn.RNNBase]:
    if cell not in CELLS:
        raise GenlabError(f"cell={cell!r} is unknown; choose one of {', '.join(CELLS)}.")
    return CELLS[cell]


class RNNEncoder(nn.Module):
    """Embeds the tokens, runs a (bidirectional) GRU/LSTM and maps its last states to
    ``(mu, logvar)`` of q(z|x). A latent GAN uses ``mu`` alone as the sentence's code."""

    data_kind = "text"  # a model with this net trains on token ids (train.py checks the data)

    def __init__(self, vocab_size: int, latent_dim: int = 32, embed_dim: int = 256, hidden_dim: int = 256,
                 cell: str = "gru", num_layers: int = 1, bidirectional: bool = True, dropout: float = 0.0,
                 num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.rnn = _cell(cell)(embed_dim, hidden_dim, num_layers, batch_first=True, bidirectional=bidirectional,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.to_latent = nn.Linear(hidden_dim * (2 if bidirectional else 1) * num_layers + num_classes, 2 * latent_dim)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = (x != PAD).sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.dropout(self.embed(x)), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        if isinstance(h, tuple):  # LSTM: (h, c)
            h = h[0]
        h = h.transpose(0, 1).flatten(1)  # [B, layers * directions * hidden]
        if self.num_classes:
            h = torch.cat([h, one_hot(labels, self.num_classes, h)], dim=1)
        mu, logvar = self.to_latent(h).chunk(2, dim=1)
        return mu, logvar


class RNNDecoder(nn.Module):
    """Autoregressive GRU/LSTM decoder p(x | z) = prod_t p(x_t | x_<t, z), categorical per token.

    z sets the initial state (Bowman et al. 2016) and, with ``z_every_step``, is also fed with every
    input token. ``latent_dim=0`` makes it a plain language model. ``word_dropout`` replaces that
    fraction of the input tokens by ``<unk>`` in training (Bowman et al.), which forces the decoder
    to use z. A conditional decoder (``num_classes`` > 0) takes codes of ``latent_dim +
    num_classes``: z and the one-hot label (a language model's code is the label alone), which
    sets the initial state and joins every input token (as in Hu et al. 2017's controlled
    generation: given to the initial state alone, the label is lost in z's noise early in
    training, and a VAE's samples then ignore their class).
    """

    data_kind = "text"

    def __init__(self, vocab_size: int, latent_dim: int = 32, embed_dim: int = 256, hidden_dim: int = 256,
                 cell: str = "gru", num_layers: int = 1, dropout: float = 0.0, word_dropout: float = 0.0,
                 z_every_step: bool = False, max_len: int = 20, num_classes: int = 0) -> None:
        super().__init__()
        if not 0.0 <= word_dropout < 1.0:
            raise GenlabError(f"word_dropout must be in [0, 1), got {word_dropout}.")
        self.vocab_size, self.latent_dim, self.num_layers, self.hidden_dim = vocab_size, latent_dim, num_layers, hidden_dim
        self.is_lstm, self.word_dropout, self.max_len = cell == "lstm", word_dropout, max_len
        code = latent_dim + num_classes  # what the decoder is given: z, and the one-hot label
        # what joins every input token: the whole code with z_every_step, else the label alone
        # (from the initial state alone it is lost in z's noise)
        self.every_step = code if z_every_step else num_classes
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.rnn = _cell(cell)(embed_dim + self.every_step, hidden_dim, num_layers,
                               batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.init_state = nn.Linear(code, hidden_dim * num_layers) if code > 0 else None
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)

    # ----------------------------------------------------------------- one pass
    def _state(self, z: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        b = z.shape[0]
        if self.init_state is None:
            h = z.new_zeros(self.num_layers, b, self.hidden_dim)
        else:
            h = torch.tanh(self.init_state(z)).view(b, self.num_layers, self.hidden_dim).transpose(0, 1).contiguous()
        return (h, torch.zeros_like(h)) if self.is_lstm else h

    def _inputs(self, tokens: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        emb = self.dropout(self.embed(tokens))
        if self.every_step:  # the whole code, or the one-hot label at its end
            fed = z[:, z.shape[1] - self.every_step :]
            emb = torch.cat([emb, fed.unsqueeze(1).expand(-1, emb.shape[1], -1).to(emb.dtype)], dim=-1)
        return emb

    def states(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The recurrent net's outputs ``[B, T, H]`` for targets ``x``, teacher-forced from
        ``<bos> x[:-1]`` (the output layer maps them to the next token's logits)."""
        inputs = torch.cat([torch.full_like(x[:, :1], BOS), x[:, :-1]], dim=1)
        if self.training and self.word_dropout > 0:
            drop = (torch.rand(inputs.shape, device=x.device) < self.word_dropout) & (inputs != PAD)
            drop[:, 0] = False  # keep <bos>
            inputs = inputs.masked_fill(drop, UNK)
        out, _ = self.rnn(self._inputs(inputs, z), self._state(z))
        return out

    def forward(self, x: torch.Tensor, z: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits ``[B, T, V]`` for targets ``x``, teacher-forced from ``<bos> x[:-1]``;
        with a boolean mask ``at`` (``[B, T]``), the logits of the masked positions alone, ``[N, V]``."""
        out = self.states(x, z)
        return self.out(self.dropout(out if at is None else out[at]))

    # ----------------------------------------------------------------- the likelihood
    def nll(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) summed over the tokens of each sentence (``<eos>`` included), in nats.

        The output layer and the softmax, most of a step's work, run on the sentences' tokens
        alone, not on their padding (``nll_on_tokens``). Except in training on a GPU, which runs
        them on every position (``nll_every_position``): picking the tokens out needs their count
        on the host, a wait at every step (figures: docs/benchmarks.md)."""
        if x.device.type != "cpu" and torch.is_grad_enabled():
            return self.nll_every_position(x, z)
        return self.nll_on_tokens(x, z)

    def nll_on_tokens(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``nll`` with the output layer and the softmax on the sentences' tokens alone: what
        ``nll`` runs but in training on a GPU. Without gradients (evaluation) they take
        ``EVAL_LOGITS`` logits at a time: the importance-weighted bound of a text VAE decodes a test
        batch four times over, 1.3 GB of logits at once."""
        tokens = x != PAD
        if torch.is_grad_enabled():
            per_token = F.cross_entropy(self(x, z, at=tokens).float(), x[tokens], reduction="none")
        else:  # evaluation: the logits a slice of tokens at a time, not gigabytes of them at once
            h, targets = self.states(x, z)[tokens], x[tokens]
            step = max(1, EVAL_LOGITS // self.vocab_size)
            per_token = torch.cat([
                F.cross_entropy(self.out(self.dropout(h[i:i + step])).float(), targets[i:i + step], reduction="none")
                for i in range(0, len(targets), step)])
        return per_token.new_zeros(x.shape).masked_scatter(tokens, per_token).sum(1)

    def nll_every_position(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``nll`` with the output layer and the softmax at every position of the batch, padding
        included (the loss ignores it): what ``nll`` runs in training on a GPU."""
        logits = self(x, z).float()
        return F.cross_entropy(logits.transpose(1, 2), x, ignore_index=PAD, reduction="none").sum(1)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) summed over the tokens of each sentence (``<eos>`` included), in nats."""
        return -self.nll(x, z)

    @staticmethod
    def units(x: torch.Tensor) -> torch.Tensor:
        """Tokens predicted per sentence (``<eos>`` included): the denominator of perplexity."""
        return (x != PAD).sum(1)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, temperature: float = 1.0, top_k: int = 0, greedy: bool = False,
                 max_len: int | None = None) -> torch.Tensor:
        """Token ids ``[B, max_len]`` decoded from ``z``: greedy (argmax), or sampled at
        ``temperature`` from the ``top_k`` most likely tokens (0: all). After ``<eos>``, padding."""
        if temperature <= 0 and not greedy:
            raise GenlabError(f"temperature must be positive (or use greedy decoding), got {temperature}.")
        max_len = max_len or self.max_len
        b = z.shape[0]
        state = self._state(z)
        token = torch.full((b, 1), BOS, dtype=torch.long, device=z.device)
        out = torch.full((b, max_len), PAD, dtype=torch.long, device=z.device)
        done = torch.zeros(b, dtype=torch.bool, device=z.device)
        for t in range(max_len):
            h, state = self.rnn(self._inputs(token, z), state)
            logits = self.out(h[:, -1]).float()
            logits[:, PAD] = logits[:, BOS] = float("-inf")
            if greedy:
                token = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if 0 < top_k < logits.shape[-1]:
                    kth = logits.topk(top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                token = torch.multinomial(torch.softmax(logits, -1), 1)
            out[:, t] = token.squeeze(1).masked_fill(done, PAD)
            done |= token.squeeze(1) == EOS
            if bool(done.all()):
                break
        return out
