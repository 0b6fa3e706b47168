"""Help and usage errors as urfave/cli v1.22 prints them, rendered from click definitions.

IPFS Cluster's ``ipfs-cluster-ctl`` and ``ipfs-cluster-service`` are urfave/cli v1 applications, and users
follow tutorials written for them, so ours print the same help, byte for byte: urfave's three templates
(``AppHelpTemplate`` for the application, ``SubcommandHelpTemplate`` for a command group,
``CommandHelpTemplate`` for a command), each flag as ``stringifyFlag`` writes it, the whole aligned by Go's
``text/tabwriter`` (minwidth 1, padding 2).

Every text comes from the click objects:

- a command's ``usage`` (one line: its NAME line and its row in the parent's COMMANDS), ``description`` and
  ``args_usage``: keyword arguments of :class:`UrfaveCommand` and :class:`UrfaveGroup`;
- an option's names in Go's order (declare ``--replication`` before ``-r``), its ``help`` (Go's usage string:
  a backquoted word in it is the placeholder, ``"the `FOLDER`"`` gives ``--config FOLDER``), its default,
  ``envvar`` and ``hidden``. The kind gives the default's form: ``is_flag`` (never shown), ``type=int`` (always,
  ``0`` too), :data:`DURATION` (Go's ``Duration.String()``), ``multiple=True`` (a slice flag: its non-empty
  values quoted), anything else a string (quoted, hidden when empty).

Arguments are read as Go's ``flag`` package reads them (``-name`` and ``--name`` alike, ``--name=value``, ``--``
ends the flags), a command's flags may follow its arguments (urfave moves them first), and an error is printed
as urfave prints it: ``Incorrect Usage…`` and the help, on stdout. What passes is handed to click normalised,
so click only maps values to parameters. urfave's built-in ``help, h`` command exists in every group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import click

from pincluster.errors import InvalidInput
from pincluster.types.gotext import go_quote, parse_go_bool, tabwrite
from pincluster.types.gotime import format_duration, parse_duration_ns

__all__ = [
    "DURATION",
    "GoFlag",
    "NoHelpTopic",
    "Topic",
    "UrfaveCommand",
    "UrfaveGroup",
    "UsageFailure",
    "app_help",
    "command_help",
    "command_paths",
    "flag_line",
    "go_flag",
    "go_parse_int",
    "subcommand_help",
]

HELP_COMMAND_USAGE = "Shows a list of commands or help for one command"


# --- errors ---------------------------------------------------------------------------------------------------
class NoHelpTopic(click.ClickException):
    """An unknown command or help topic: ``No help topic for '<x>'`` on stderr, exit 3."""

    exit_code = 3

    def __init__(self, name: str) -> None:
        super().__init__(f"No help topic for '{name}'")

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.format_message(), err=True)


class UsageFailure(click.ClickException):
    """A usage error, printed as urfave prints it (``Incorrect Usage…`` and the help) on stdout.

    The exit code is the application's: the ctl exits 1 on any error urfave returns, the service ignores
    them and exits 0."""

    def __init__(self, text: str, exit_code: int) -> None:
        super().__init__(text)
        setattr(self, "exit_code", exit_code)  # noqa: B010  (click reads it per instance)

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.message, nl=False)


# --- flags ------------------------------------------------------------------------------------------------------
class GoDuration(click.types.StringParamType):
    """A ``time.Duration`` flag (``DurationFlag``): the value stays text, checked as Go parses it (and, as
    pincluster adds, a bare number of seconds); the help shows the default as Go's ``Duration.String()``."""

    name = "duration"


DURATION = GoDuration()


@dataclass(frozen=True)
class GoFlag:
    """A flag as urfave sees it: names in order (without dashes), kind, usage string, default, env vars."""

    names: tuple[str, ...]
    kind: str  # "bool", "string", "int", "duration" or "slice"
    usage: str = ""
    default: Any = None
    envvars: tuple[str, ...] = ()
    hidden: bool = False
    choices: tuple[str, ...] = ()
    opt: str = ""  # the option string click is given the value with


HELP_FLAG = GoFlag(("help", "h"), "bool", "show help")
VERSION_FLAG = GoFlag(("version", "v"), "bool", "print the version")


def go_flag(param: click.Option) -> GoFlag:
    """The urfave flag a click option stands for."""
    if param.is_flag:
        kind = "bool"
    elif param.multiple:
        kind = "slice"
    elif isinstance(param.type, GoDuration):
        kind = "duration"
    elif isinstance(param.type, click.types.IntParamType):
        kind = "int"
    else:
        kind = "string"
    env = param.envvar
    envvars = (env,) if isinstance(env, str) else tuple(env or ())
    choices = tuple(str(c) for c in param.type.choices) if isinstance(param.type, click.Choice) else ()
    opt = next((o for o in param.opts if o.startswith("--")), param.opts[0])
    return GoFlag(tuple(o.lstrip("-") for o in param.opts), kind, param.help or "", param.default, envvars,
                  param.hidden, choices, opt)


def _unquote_usage(usage: str) -> tuple[str, str]:
    """urfave's ``unquoteUsage``: the first backquoted word is the placeholder, shown without its quotes."""
    start = usage.find("`")
    end = usage.find("`", start + 1) if start >= 0 else -1
    if end < 0:
        return "", usage
    name = usage[start + 1:end]
    return name, usage[:start] + name + usage[end + 1:]


def _default_text(f: GoFlag) -> str:
    """`` (default: …)`` as ``stringifyFlag`` writes it for the flag's kind ("" when not shown)."""
    d = f.default
    if f.kind == "bool":
        return ""
    if f.kind == "slice":
        shown = [go_quote(str(v)) for v in (d if isinstance(d, list | tuple) else ()) if str(v)]
        return f" (default: {', '.join(shown)})" if shown else ""
    if f.kind == "int":
        return f" (default: {d if isinstance(d, int) else 0})"
    if f.kind == "duration":
        ns = d if isinstance(d, int) else parse_duration_ns(d) if isinstance(d, str) and d else 0
        return f" (default: {format_duration(ns)})"
    return f" (default: {go_quote(d)})" if isinstance(d, str) and d else ""


def flag_line(f: GoFlag) -> str:
    """urfave's ``stringifyFlag``: ``--name value, -n value<TAB>usage (default: …) [$ENV]``."""
    placeholder, usage = _unquote_usage(f.usage)
    if f.kind != "bool" and not placeholder:
        placeholder = "value"
    names = ", ".join(("-" if len(n) == 1 else "--") + n + (" " + placeholder if placeholder else "")
                      for n in f.names)
    line = names + "\t" + (usage + _default_text(f)).strip()
    if f.envvars:
        line += " [$" + ", $".join(f.envvars) + "]"
    return line


# --- the three templates ---------------------------------------------------------------------------------------
@dataclass
class Topic:
    """What urfave's templates read of an App or a Command: its full name (``HelpName``), texts, the rows of
    its COMMANDS list and its visible flags."""

    name: str
    usage: str = ""
    description: str = ""
    args_usage: str = ""
    version: str = ""
    commands: list[tuple[str, str]] = field(default_factory=list)
    flags: list[GoFlag] = field(default_factory=list)


def _aligned(text: str) -> str:
    """The template's output through ``tabwriter.NewWriter(out, 1, 8, 2, ' ', 0)``."""
    return "\n".join(tabwrite(text.split("\n"), 1, 2))


def _command_rows(t: Topic) -> str:
    return "".join(f"\n   {names}\t{usage}" for names, usage in t.commands)


def _options(t: Topic) -> str:
    """The OPTIONS section of the command templates: each flag, then a line of three spaces."""
    return "\n\nOPTIONS:\n   " + "".join(flag_line(f) + "\n   " for f in t.flags) if t.flags else ""


def app_help(t: Topic) -> str:
    """``AppHelpTemplate`` (an application has commands: ``help`` at least)."""
    text = (f"NAME:\n   {t.name}{' - ' + t.usage if t.usage else ''}\n\nUSAGE:\n   {t.name} "
            f"{'[global options]' if t.flags else ''} command [command options] {t.args_usage or '[arguments...]'}")
    if t.version:
        text += f"\n\nVERSION:\n   {t.version}"
    if t.description:
        text += f"\n\nDESCRIPTION:\n   {t.description}"
    text += "\n\nCOMMANDS:" + _command_rows(t)
    if t.flags:
        text += "\n\nGLOBAL OPTIONS:\n   " + "\n   ".join(flag_line(f) for f in t.flags)
    return _aligned(text + "\n")


def command_help(t: Topic) -> str:
    """``CommandHelpTemplate``."""
    text = (f"NAME:\n   {t.name} - {t.usage}\n\nUSAGE:\n   {t.name}{' [command options]' if t.flags else ''} "
            f"{t.args_usage or '[arguments...]'}")
    if t.description:
        text += f"\n\nDESCRIPTION:\n   {t.description}"
    return _aligned(text + _options(t) + "\n")


def subcommand_help(t: Topic) -> str:
    """``SubcommandHelpTemplate``: a group's help (its NAME line shows the description when there is one)."""
    text = (f"NAME:\n   {t.name} - {t.description or t.usage}\n\nUSAGE:\n   {t.name} command"
            f"{' [command options]' if t.flags else ''} {t.args_usage or '[arguments...]'}\n\nCOMMANDS:"
            + _command_rows(t))
    return _aligned(text + _options(t) + "\n")


# --- reading arguments as Go's flag package ----------------------------------------------------------------------
_INT64 = 1 << 63


def go_parse_int(text: str) -> int:
    """``strconv.ParseInt(text, 0, 64)``: a sign, a ``0x``/``0o``/``0b`` or ``0`` (octal) prefix, ``_`` between
    digits. Raises ``ValueError`` with the ``flag`` package's reason (``parse error``, ``value out of range``)."""
    s = text[1:] if text[:1] in ("+", "-") else text
    if not s:
        raise ValueError("parse error")
    base, digits = 10, s
    if s[0] == "0":
        if len(s) >= 3 and s[1].lower() in ("b", "o", "x"):
            base, digits = {"b": 2, "o": 8, "x": 16}[s[1].lower()], s[2:]
        else:
            base, digits = 8, s[1:]
    value = 0
    for c in digits:
        if c == "_":
            continue
        d = int(c, 36) if c.isascii() and c.isalnum() else base
        if d >= base:
            raise ValueError("parse error")
        value = value * base + d
        if value >= 1 << 64:
            raise ValueError("value out of range")
    if "_" in digits and not _underscores_ok(s):
        raise ValueError("parse error")
    if value > (_INT64 if text[0] == "-" else _INT64 - 1):
        raise ValueError("value out of range")
    return -value if text[0] == "-" else value


def _underscores_ok(s: str) -> bool:
    """Go's ``underscoreOK``: each ``_`` between digits (a base prefix counts as one)."""
    saw = "^"
    i = 0
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in ("b", "o", "x"):
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    for c in s[i:]:
        if (c.isascii() and c.isdigit()) or (hexa and c.lower() in "abcdef"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _check_value(f: GoFlag, value: str) -> str:
    """The value click gets for a flag that takes one; ``ValueError`` with Go's reason when it is invalid."""
    if f.kind == "int":
        return str(go_parse_int(value))
    if f.kind == "duration":
        try:
            parse_duration_ns(value)
        except InvalidInput:
            try:
                float(value)  # pincluster also takes a bare number of seconds
            except ValueError:
                raise ValueError("parse error") from None
    if f.choices and value not in f.choices:
        raise ValueError("use " + " or ".join(f.choices))
    return value


def _flag_named(arg: str, by_name: dict[str, GoFlag]) -> GoFlag | None:
    """urfave's ``argIsFlag``: the flag ``arg`` names, if it is one of the command's."""
    if arg in ("-", "--") or not arg.startswith("-"):
        return None
    if arg.startswith("--"):
        arg = arg.replace("-", "", 2)
    if arg.startswith("-"):
        arg = arg.replace("-", "", 1)
    return by_name.get(arg.split("=")[0])


def _reorder(args: Sequence[str], by_name: dict[str, GoFlag]) -> list[str]:
    """urfave's ``reorderArgs``: a command's flags (and their values) go before its other arguments.

    Unlike urfave, the argument after a bool flag stays an argument (urfave takes it along as a value, so
    ``add -r dir --name x`` would add ``--name`` and ``x`` as paths)."""
    flags: list[str] = []
    rest: list[str] = []
    value_next = False
    for i, arg in enumerate(args):
        f = _flag_named(arg, by_name)
        if value_next and f is None:
            value_next = False
            flags.append(arg)
        elif arg == "--":
            rest = ["--", *rest, *args[i + 1:]]
            break
        elif f is not None:
            flags.append(arg)
            value_next = "=" not in arg and f.kind != "bool"
        else:
            rest.append(arg)
    return flags + rest


@dataclass
class _Parsed:
    """What Go's ``flag.FlagSet.Parse`` made of the arguments."""

    values: dict[int, list[str]]  # flag index → the values it was given, in order
    names: list[tuple[int, str]]  # (flag index, name used), in order
    rest: list[str]
    error: str = ""

    def last(self, i: int) -> str | None:
        vals = self.values.get(i)
        return vals[-1] if vals else None


def _go_parse(flags: Sequence[GoFlag], args: Sequence[str]) -> _Parsed:
    """Go's ``flag.FlagSet.Parse``: flags until the first argument that is not one, or ``--``."""
    index = {n: i for i, f in enumerate(flags) for n in f.names}
    out = _Parsed({}, [], [])
    i = 0
    while i < len(args):
        s = args[i]
        if len(s) < 2 or s[0] != "-":
            break
        dashes = 2 if s[1] == "-" else 1
        if s == "--":
            i += 1
            break
        name = s[dashes:]
        if not name or name[0] in "-=":
            out.error = f"bad flag syntax: {s}"
            return out
        i += 1
        value: str | None = None
        eq = name.find("=", 1)
        if eq > 0:
            name, value = name[:eq], name[eq + 1:]
        k = index.get(name)
        if k is None:
            out.error = f"flag provided but not defined: -{name}"
            return out
        f = flags[k]
        if f.kind == "bool":
            parsed = parse_go_bool(value if value is not None else "true")
            if parsed is None:
                out.error = f"invalid boolean value {go_quote(value or '')} for -{name}: parse error"
                return out
            value = "true" if parsed else "false"
        else:
            if value is None and i < len(args):
                value, i = args[i], i + 1
            if value is None:
                out.error = f"flag needs an argument: -{name}"
                return out
            try:
                value = _check_value(f, value)
            except ValueError as err:
                out.error = f"invalid value {go_quote(value)} for flag -{name}: {err}"
                return out
        out.values.setdefault(k, []).append(value)
        out.names.append((k, name))
    out.rest = list(args[i:])
    return out


def _two_forms(flags: Sequence[GoFlag], parsed: _Parsed) -> str:
    """urfave's ``normalizeFlags``: one flag given under two of its names is an error."""
    used = {name for _, name in parsed.names}
    for f in flags:
        first = ""
        for name in f.names if len(f.names) > 1 else ():
            if name in used:
                if first:
                    return f"Cannot use two forms of the same flag: {name} {first}"
                first = name
    return ""


def _click_args(flags: Sequence[GoFlag], parsed: _Parsed) -> list[str]:
    """The parsed flags as click reads them, then ``--`` and the other arguments."""
    out: list[str] = []
    seen: list[int] = []
    for k, _ in parsed.names:
        if k not in seen:
            seen.append(k)
    for k in seen:
        f, vals = flags[k], parsed.values[k]
        if f.kind == "bool":
            out.extend([f.opt] if vals[-1] == "true" else [])
        else:
            for v in vals if f.kind == "slice" else vals[-1:]:
                out.extend([f"{f.opt}={v}"] if f.opt.startswith("--") else [f.opt, v])
    return [*out, "--", *parsed.rest]


# --- click classes ----------------------------------------------------------------------------------------------
def _path(ctx: click.Context) -> str:
    """``HelpName``: the names of the commands from the application's down to ``ctx``'s."""
    names: list[str] = []
    c: click.Context | None = ctx
    while c is not None:
        names.append(c.command.name or "")
        c = c.parent
    return " ".join(reversed(names))


def _root(ctx: click.Context) -> UrfaveGroup:
    root = ctx.find_root().command
    assert isinstance(root, UrfaveGroup)
    return root


class _Urfave(click.Command):
    """What urfave's commands and groups share: their texts, Go's argument reading and urfave's help."""

    def __init__(self, name: str | None, *args: Any, usage: str = "", description: str = "", args_usage: str = "",
                 aliases: Sequence[str] = (), **kwargs: Any) -> None:
        kwargs.setdefault("add_help_option", False)  # -h/--help are read with the other flags
        super().__init__(name, *args, **kwargs)
        self.usage = usage
        self.description = description
        self.args_usage = args_usage
        self.aliases = tuple(aliases)

    @property
    def names(self) -> str:
        """``join .Names ", "``: the name, then the aliases."""
        return ", ".join((self.name or "", *self.aliases))

    def visible_flags(self) -> list[GoFlag]:
        return [go_flag(p) for p in self.params if isinstance(p, click.Option) and not p.hidden]

    def all_flags(self, ctx: click.Context) -> list[GoFlag]:
        """Every flag Go's parser knows here: hidden ones too, and urfave's own ``help`` (and ``version``)."""
        own = [go_flag(p) for p in self.params if isinstance(p, click.Option)]
        return [*own, HELP_FLAG]

    def as_command(self, help_name: str) -> Topic:
        """This command as ``CommandHelpTemplate`` reads it (the flags it was defined with, no ``help``)."""
        return Topic(help_name, self.usage, self.description, self.args_usage, flags=self.visible_flags())

    def get_help(self, ctx: click.Context) -> str:
        """The help urfave shows for ``--help`` here (a command's; see :class:`UrfaveGroup` for groups)."""
        return command_help(self.as_command(_path(ctx)))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.resilient_parsing:
            return super().parse_args(ctx, args)
        flags = self.all_flags(ctx)
        leaf = not isinstance(self, click.Group)
        if leaf:
            args = _reorder(args, {n: f for f in flags for n in f.names})
        parsed = _go_parse(flags, args)
        self._check_usage(ctx, flags, parsed, leaf)
        help_at = flags.index(HELP_FLAG)
        if parsed.last(help_at) == "true":
            click.echo(self.get_help(ctx), nl=False)
            ctx.exit(0)
        root = _root(ctx)
        if ctx.parent is None and root.version and parsed.last(flags.index(VERSION_FLAG)) == "true":
            click.echo(f"{root.name} version {root.version}")
            ctx.exit(0)
        try:
            return super().parse_args(ctx, _click_args(flags, parsed))
        except click.UsageError as err:  # a value click would not take: said as urfave says a flag error
            raise UsageFailure(f"Incorrect Usage: {err.format_message()}\n\n{self.get_help(ctx)}",
                               root.usage_exit_code) from None

    def _check_usage(self, ctx: click.Context, flags: Sequence[GoFlag], parsed: _Parsed, leaf: bool) -> None:
        """urfave's answers to a flag error: a command says ``Incorrect Usage:`` (parse errors first), an
        application or group ``Incorrect Usage.`` (after the two-forms check, which prints the error alone)."""
        two_forms = _two_forms(flags, parsed)
        code = _root(ctx).usage_exit_code
        if leaf:
            problem = parsed.error or two_forms
            if problem:
                raise UsageFailure(f"Incorrect Usage: {problem}\n\n{self.get_help(ctx)}", code)
        elif two_forms:
            gap = "\n" if ctx.parent is None else "\n\n"
            raise UsageFailure(f"{two_forms}{gap}{self.get_help(ctx)}", code)
        elif parsed.error:
            raise UsageFailure(f"Incorrect Usage. {parsed.error}\n\n{self.get_help(ctx)}", code)


class UrfaveCommand(_Urfave):
    """A urfave command (no subcommands). Extra arguments are kept in ``ctx.args``, as urfave keeps them."""

    allow_extra_args = True


class _HelpCommand(UrfaveCommand):
    """urfave's ``help, h [command]``, which every group has: the help of one of the group's commands (with
    ``CommandHelpTemplate``, a group's too), or without one the group's as an application's."""

    def __init__(self) -> None:
        super().__init__("help", usage=HELP_COMMAND_USAGE, args_usage="[command]", aliases=("h",),
                         params=[click.Argument(["topic"], nargs=-1)])

    def get_help(self, ctx: click.Context) -> str:
        assert ctx.parent is not None
        return command_help(self.as_command(_help_name(self, ctx.parent)))

    def invoke(self, ctx: click.Context) -> None:
        owner = ctx.parent
        assert owner is not None and isinstance(owner.command, UrfaveGroup)
        topic: tuple[str, ...] = ctx.params["topic"]
        if not topic:
            click.echo(owner.command.as_app(owner), nl=False)
            return
        cmd = owner.command.get_command(owner, topic[0])
        if not isinstance(cmd, _Urfave):
            raise NoHelpTopic(topic[0])
        click.echo(command_help(cmd.as_command(_help_name(cmd, owner))), nl=False)


_HELP = _HelpCommand()


def _help_name(cmd: _Urfave, parent: click.Context) -> str:
    """A command's ``HelpName`` under ``parent``: urfave leaves the application's own ``help`` without one."""
    if cmd is _HELP and parent.parent is None:
        return ""
    return f"{_path(parent)} {cmd.name}"


#: What a group does when no subcommand of it is named (``name`` None) or the one named does not exist.
Action = Callable[[click.Context, str | None], None]


class UrfaveGroup(_Urfave, click.Group):
    """A urfave application (the root: ``version``, ``usage_exit_code``) or a command with subcommands.

    Commands are listed in the order they are defined, or the one of ``order`` (names; the others after
    them), for commands defined in several modules. Run without a subcommand, a group shows its help; an
    unknown subcommand is ``No help topic for '<x>'`` (exit 3); ``action`` replaces both (urfave's
    ``App.Action``). The group's callback runs first either way, as urfave's ``Before``."""

    command_class = UrfaveCommand
    group_class = type

    def __init__(self, name: str | None = None, commands: Any = None, *, version: str = "",
                 usage_exit_code: int = 1, action: Action | None = None, order: Sequence[str] = (),
                 **kwargs: Any) -> None:
        kwargs.setdefault("invoke_without_command", True)
        super().__init__(name, commands, **kwargs)
        self.version = version
        self.usage_exit_code = usage_exit_code
        self.action = action
        self.order = tuple(order)

    def ordered(self) -> list[click.Command]:
        """The subcommands in the order they are listed."""
        rank = {name: i for i, name in enumerate(self.order)}
        return sorted(self.commands.values(), key=lambda c: rank.get(c.name or "", len(rank)))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [c.name or "" for c in self.ordered()]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        return _HELP if cmd is None and cmd_name in ("help", "h") else cmd

    def all_flags(self, ctx: click.Context) -> list[GoFlag]:
        flags = super().all_flags(ctx)
        return [*flags, VERSION_FLAG] if ctx.parent is None and self.version else flags

    def _rows(self, with_help: bool) -> list[tuple[str, str]]:
        rows = [(c.names, c.usage) for c in self.ordered() if isinstance(c, _Urfave) and not c.hidden]
        return [*rows, (_HELP.names, _HELP.usage)] if with_help else rows

    def as_app(self, ctx: click.Context) -> str:
        """``AppHelpTemplate`` of this group: the application's help, or a group's as its ``help`` shows it (an
        application of its own: the root's version, its flags and ``--help`` as global options)."""
        root = ctx.parent is None
        flags = [*self.visible_flags(), HELP_FLAG, *([VERSION_FLAG] if root and self.version else [])]
        return app_help(Topic(_path(ctx), self.usage, self.description, self.args_usage, _root(ctx).version,
                              self._rows(with_help=root), flags))

    def get_help(self, ctx: click.Context) -> str:
        if ctx.parent is None:
            return self.as_app(ctx)
        return subcommand_help(Topic(_path(ctx), self.usage, self.description, self.args_usage,
                                     commands=self._rows(with_help=False),
                                     flags=[*self.visible_flags(), HELP_FLAG]))

    def invoke(self, ctx: click.Context) -> Any:
        name = ctx._protected_args[0] if ctx._protected_args else None
        if name is not None and self.get_command(ctx, name) is not None:
            return super().invoke(ctx)
        with ctx:
            click.Command.invoke(self, ctx)  # urfave's Before
            if self.action is not None:
                self.action(ctx, name)
            elif name is None:
                click.echo(self.get_help(ctx), nl=False)
            else:
                raise NoHelpTopic(name)
        return None


def command_paths(group: UrfaveGroup, prefix: str, *, root: bool = True) -> Iterator[str]:
    """Every command path in the order listed, as the ctl's ``commands`` (Go's ``walkCommands``) prints them:
    hidden commands too, and the application's ``help`` last (the groups' own ``help`` is not listed)."""
    for cmd in group.ordered():
        yield f"{prefix} {cmd.name}"
        if isinstance(cmd, UrfaveGroup):
            yield from command_paths(cmd, f"{prefix} {cmd.name}", root=False)
    if root:
        yield f"{prefix} {_HELP.name}"
