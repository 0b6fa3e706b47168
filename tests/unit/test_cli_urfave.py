"""urfave/cli v1.22's help and usage errors rendered from click definitions (``pincluster.cli.urfave``): the flag
rules of ``stringifyFlag``, the three templates through Go's tabwriter, and Go's ``flag`` parsing errors.

The CLIs' whole help is compared byte for byte with the Go binaries' in ``tests/integration/test_go_help.py``."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from pincluster.cli.urfave import (
    DURATION,
    GoFlag,
    Topic,
    UrfaveGroup,
    app_help,
    command_help,
    command_paths,
    flag_line,
    go_flag,
    go_parse_int,
    subcommand_help,
)


def test_a_backquoted_word_in_the_usage_is_the_placeholder() -> None:
    f = GoFlag(("config", "c"), "string", "path to the configuration and data `FOLDER`", "/root/.ipfs-cluster",
               ("IPFS_CLUSTER_PATH",))
    assert flag_line(f) == ('--config FOLDER, -c FOLDER\tpath to the configuration and data FOLDER '
                            '(default: "/root/.ipfs-cluster") [$IPFS_CLUSTER_PATH]')
    # only the first pair of backquotes; an unpaired one stays as it is, with the default placeholder
    assert flag_line(GoFlag(("x",), "string", "a `B` and `C`")) == "-x B\ta B and `C`"
    assert flag_line(GoFlag(("x",), "string", "a `B")) == "-x value\ta `B"


def test_defaults_as_stringify_flag_shows_them() -> None:
    assert flag_line(GoFlag(("timeout", "t"), "int", "seconds", 0)) == \
        "--timeout value, -t value\tseconds (default: 0)"  # an int's default is always shown, 0 too
    assert flag_line(GoFlag(("name", "n"), "string", "a name", "")) == "--name value, -n value\ta name"
    assert flag_line(GoFlag(("name",), "string", "a name", None)) == "--name value\ta name"
    assert flag_line(GoFlag(("enc",), "string", "encoding", 'te"x\\t')) == \
        '--enc value\tencoding (default: "te\\"x\\\\t")'
    assert flag_line(GoFlag(("wt",), "duration", "how long", "0s")) == "--wt value\thow long (default: 0s)"
    assert flag_line(GoFlag(("wt",), "duration", "how long", "90s")) == "--wt value\thow long (default: 1m30s)"
    assert flag_line(GoFlag(("wait", "w"), "bool", "wait", False)) == "--wait, -w\twait"  # never a default
    assert flag_line(GoFlag(("x",), "string", "", "")) == "-x value\t"  # nothing to say: an empty cell


def test_slice_flags_show_their_non_empty_values() -> None:
    assert flag_line(GoFlag(("metadata",), "slice", "key=value", ())) == "--metadata value\tkey=value"
    assert flag_line(GoFlag(("m",), "slice", "kv", ("a", "", "b"))) == '-m value\tkv (default: "a", "b")'


def test_env_hint_comes_last() -> None:
    assert flag_line(GoFlag(("basic-auth",), "string", "creds", "", ("CLUSTER_CREDENTIALS",))) == \
        "--basic-auth value\tcreds [$CLUSTER_CREDENTIALS]"
    assert flag_line(GoFlag(("l",), "string", "level", "", ("A", "B"))) == "-l value\tlevel [$A, $B]"
    assert flag_line(GoFlag(("d",), "bool", "debug", None, ("DEBUG",))) == "-d\tdebug [$DEBUG]"


def test_flags_read_from_click_options() -> None:
    @click.command()
    @click.option("--replication-min", "--rmin", "rmin", default=0, type=int, help="min")
    @click.option("--https", "-s", is_flag=True, help="https")
    @click.option("--metadata", multiple=True, help="md")
    @click.option("--wait-timeout", "--wt", default="0s", type=DURATION, help="wt")
    @click.option("--host", "-l", envvar="HOST", default="/ip4/x", help="h `ADDR`")
    def cmd(**_: object) -> None:
        pass

    lines = [flag_line(go_flag(p)) for p in cmd.params if isinstance(p, click.Option)]
    assert lines == ["--replication-min value, --rmin value\tmin (default: 0)", "--https, -s\thttps",
                     "--metadata value\tmd", "--wait-timeout value, --wt value\twt (default: 0s)",
                     '--host ADDR, -l ADDR\th ADDR (default: "/ip4/x") [$HOST]']


def test_a_multi_line_usage_ends_the_tabwriters_column_block() -> None:
    """Go's tabwriter aligns a column over consecutive lines with a cell in it: the line after a usage's
    newline has none, so the flags after it are aligned among themselves (as the ctl's ``--basic-auth``)."""
    t = Topic("prog cmd", "does things", flags=[
        GoFlag(("a-long-name",), "string", "first"),
        GoFlag(("b",), "string", "two\nlines", "x"),
        GoFlag(("c",), "bool", "third"),
    ])
    assert command_help(t) == (
        "NAME:\n   prog cmd - does things\n\nUSAGE:\n   prog cmd [command options] [arguments...]\n\nOPTIONS:\n"
        "   --a-long-name value  first\n"
        "   -b value             two\n"
        'lines (default: "x")\n'
        "   -c  third\n"
        "   \n")


def test_the_three_templates() -> None:
    rows = [("ls", "list"), ("remove", "remove one")]
    flags = [GoFlag(("help", "h"), "bool", "show help")]
    assert app_help(Topic("prog", "a tool", "\nAbout.\n", version="1.0", commands=rows, flags=flags)) == (
        "NAME:\n   prog - a tool\n\nUSAGE:\n   prog [global options] command [command options] [arguments...]\n\n"
        "VERSION:\n   1.0\n\nDESCRIPTION:\n   \nAbout.\n\n\nCOMMANDS:\n   ls      list\n   remove  remove one\n\n"
        "GLOBAL OPTIONS:\n   --help, -h  show help\n")
    assert subcommand_help(Topic("prog grp", "a group", commands=rows, flags=flags)) == (
        "NAME:\n   prog grp - a group\n\nUSAGE:\n   prog grp command [command options] [arguments...]\n\n"
        "COMMANDS:\n   ls      list\n   remove  remove one\n\nOPTIONS:\n   --help, -h  show help\n   \n")
    # a command without flags: no OPTIONS; ArgsUsage " " is set (two spaces after the name)
    assert command_help(Topic("prog v", "version", args_usage=" ")) == (
        "NAME:\n   prog v - version\n\nUSAGE:\n   prog v  \n")


def test_go_parse_int() -> None:
    for text, value in (("0", 0), ("-12", -12), ("+7", 7), ("0x1f", 31), ("0X_1F", 31), ("010", 8), ("0o17", 15),
                        ("0b101", 5), ("1_000", 1000), ("0_7", 7), ("0x1_0", 16), ("9223372036854775807", 2**63 - 1),
                        ("-9223372036854775808", -(2**63))):
        assert go_parse_int(text) == value, text
    for text in ("", "+", "abc", "08", "0x", "1__0", "1_", "_1", " 1", "1.5", "+-1", "١"):
        with pytest.raises(ValueError, match="parse error"):
            go_parse_int(text)
    with pytest.raises(ValueError, match="value out of range"):
        go_parse_int("9223372036854775808")


# --- a small application: Go's argument reading and urfave's answers --------------------------------------------
seen: list[dict[str, object]] = []


@click.group("app", cls=UrfaveGroup, usage="an app", version="0.1")
@click.option("--host", "-l", default="h", help="host")
def app(host: str) -> None:
    seen.append({"host": host})


@app.group(usage="a group")
def grp() -> None:
    pass


@grp.command("run", usage="run it", args_usage="<thing>")
@click.argument("things", nargs=-1)
@click.option("--count", "-n", default=0, type=int, help="how many")
@click.option("--force", "-f", is_flag=True, help="force")
@click.option("--tag", multiple=True, help="tags")
def run_cmd(things: tuple[str, ...], count: int, force: bool, tag: tuple[str, ...]) -> None:
    seen.append({"things": things, "count": count, "force": force, "tag": tag})


def invoke(*args: str) -> tuple[int, str]:
    seen.clear()
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


RUN_HELP = ("NAME:\n   app grp run - run it\n\nUSAGE:\n   app grp run [command options] <thing>\n\nOPTIONS:\n"
            "   --count value, -n value  how many (default: 0)\n   --force, -f              force\n"
            "   --tag value              tags\n   \n")


def test_flags_are_read_as_gos_flag_package_reads_them() -> None:
    assert invoke("-host", "x", "grp", "run", "a", "-count=0x10", "--force", "b", "--tag", "t1", "-tag=t2") == (0, "")
    assert seen == [{"host": "x"}, {"things": ("a", "b"), "count": 16, "force": True, "tag": ("t1", "t2")}]
    assert invoke("grp", "run", "-f=false", "--", "-n", "3") == (0, "")  # after "--", arguments
    assert seen[1] == {"things": ("-n", "3"), "count": 0, "force": False, "tag": ()}
    assert invoke("grp", "run", "x", "--bogus") == (0, "")  # after the arguments, not a known flag: an argument
    assert seen[1]["things"] == ("x", "--bogus")


def test_usage_errors_as_urfave_prints_them() -> None:
    assert invoke("grp", "run", "--bogus") == (1, "Incorrect Usage: flag provided but not defined: -bogus\n\n"
                                               + RUN_HELP)
    assert invoke("grp", "run", "-n") == (1, "Incorrect Usage: flag needs an argument: -n\n\n" + RUN_HELP)
    assert invoke("grp", "run", "x", "-n") == (  # urfave moves "-n" before "x", which becomes its value
        1, 'Incorrect Usage: invalid value "x" for flag -n: parse error\n\n' + RUN_HELP)
    assert invoke("grp", "run", "--count", "many") == (
        1, 'Incorrect Usage: invalid value "many" for flag -count: parse error\n\n' + RUN_HELP)
    assert invoke("grp", "run", "--force=maybe") == (
        1, 'Incorrect Usage: invalid boolean value "maybe" for -force: parse error\n\n' + RUN_HELP)
    assert invoke("grp", "run", "-n", "1", "--count", "2") == (
        1, "Incorrect Usage: Cannot use two forms of the same flag: n count\n\n" + RUN_HELP)
    code, out = invoke("grp", "--bogus")  # a group: "Incorrect Usage." and its help
    assert code == 1 and out.startswith("Incorrect Usage. flag provided but not defined: -bogus\n\nNAME:\n   app grp")
    code, out = invoke("---x")
    assert code == 1 and out.startswith("Incorrect Usage. bad flag syntax: ---x\n\nNAME:\n   app - an app\n")
    code, out = invoke("--host", "a", "-l", "b")  # the application: the two-forms error alone, then the help
    assert code == 1 and out.startswith("Cannot use two forms of the same flag: l host\nNAME:\n")
    assert seen == []


def test_help_topics_and_unknown_commands() -> None:
    assert invoke("grp", "run", "--help") == (0, RUN_HELP)
    assert invoke("grp", "help", "run") == (0, RUN_HELP)
    assert invoke("-h") == invoke("help") == invoke("h") == invoke()
    code, out = invoke()
    assert code == 0 and "\n   grp      a group\n   help, h  Shows a list of commands or help for one command\n" in out
    assert out.endswith("GLOBAL OPTIONS:\n   --host value, -l value  host (default: \"h\")\n"
                        "   --help, -h              show help\n   --version, -v           print the version\n")
    # "help grp run" shows the group (with CommandHelpTemplate), as urfave v1 does
    assert invoke("help", "grp", "run") == (0, "NAME:\n   app grp - a group\n\nUSAGE:\n   app grp [arguments...]\n")
    assert invoke("help", "help") == (0, "NAME:\n    - Shows a list of commands or help for one command\n\n"
                                         "USAGE:\n    [command]\n")
    assert invoke("grp") == invoke("grp", "-h")
    assert invoke("-v") == (0, "app version 0.1\n")
    r = CliRunner().invoke(app, ["nope"])
    assert (r.exit_code, r.stdout, r.stderr) == (3, "", "No help topic for 'nope'\n")
    r = CliRunner().invoke(app, ["help", "grp", "nope"])  # only the first topic counts
    assert r.exit_code == 0
    r = CliRunner().invoke(app, ["grp", "help", "nope"])
    assert (r.exit_code, r.stderr) == (3, "No help topic for 'nope'\n")
    assert list(command_paths(app, "app")) == ["app grp", "app grp run", "app help"]
