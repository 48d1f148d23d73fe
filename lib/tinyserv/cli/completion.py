"""Shell completion for `tinyserv`, made from the command table (commands.py): bash and zsh.

`eval "$(tinyserv completion bash)"` in ~/.bashrc (or zsh in ~/.zshrc) completes command names, then
each command's flags (-a/--app and -r/--remote where it takes an app, --json where it has it) and the
fixed choices of its arguments (`completion bash|zsh`).
"""

import shlex

from tinyserv.common import commands

APP_FLAGS = [("-a", "--app", "the app"), ("-r", "--remote", "the git remote that names the app and its server")]


def flags(cmd):
    """[(flags, help, takes a value, choices)] of a client command, from its declaration."""
    found = [((short, long), what, True, None) for short, long, what in APP_FLAGS] if cmd.app and cmd.app_flag else []
    for a in cmd.args:
        if a.flags[0].startswith("-"):
            found.append((a.flags, a.options.get("help") or "", a.options.get("action") != "store_true", None))
    if cmd.json:
        found.append((("--json",), "print JSON", False, None))
    return found


def choices(cmd):
    """The fixed values of the command's positional arguments (completion bash|zsh)."""
    return [c for a in cmd.args if not a.flags[0].startswith("-") for c in a.options.get("choices") or []]


def bash():
    """A bash completion function for tinyserv."""
    cases = []
    for cmd in commands.client_commands():
        words = [f for fl, _, _, _ in flags(cmd) for f in fl] + choices(cmd)
        cases.append("        %s) words=%s ;;" % (shlex.quote(cmd.name), shlex.quote(" ".join(words))))
    names = " ".join(c.name for c in commands.client_commands())
    return BASH.replace("@NAMES@", shlex.quote(names)).replace("@CASES@", "\n".join(cases))


BASH = r"""# tinyserv completion for bash: eval "$(tinyserv completion bash)"
_tinyserv() {
    local line="${COMP_LINE:0:COMP_POINT}" cur command="" words skip=0 word
    cur="${line##*[[:space:]]}"
    for word in ${line% *}; do
        if (( skip )); then skip=0; continue; fi
        case "$word" in
            tinyserv|*/tinyserv) ;;
            -a|--app|-r|--remote) skip=1 ;;
            -*) ;;
            *) command="$word"; break ;;
        esac
    done
    if [[ -z "$command" ]]; then
        words=@NAMES@
    else
        case "$command" in
@CASES@
        *) words="" ;;
        esac
    fi
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    # bash splits words at ':' (COMP_WORDBREAKS): offer only what follows the last one the cursor is after.
    if [[ "$cur" == *:* ]]; then
        local colon="${cur%"${cur##*:}"}" i
        for i in "${!COMPREPLY[@]}"; do COMPREPLY[$i]="${COMPREPLY[$i]#"$colon"}"; done
    fi
}
complete -F _tinyserv tinyserv
"""


def zsh():
    """A zsh completion function for tinyserv."""
    described = " ".join(shlex.quote("%s:%s" % (c.name.replace(":", "\\:"), c.help))
                         for c in commands.client_commands())
    cases = []
    for cmd in commands.client_commands():
        specs = [zsh_spec(fl, what, takes_value) for fl, what, takes_value, _ in flags(cmd)]
        if choices(cmd):
            specs.append(shlex.quote("1:%s:(%s)" % (cmd.name, " ".join(choices(cmd)))))
        cases.append("        %s) _arguments %s ;;" % (shlex.quote(cmd.name), " ".join(specs) or "'*: :_files'"))
    return ZSH.replace("@NAMES@", described).replace("@CASES@", "\n".join(cases))


def zsh_spec(fl, what, takes_value):
    """One _arguments spec: (-a --app){-a,--app}'[the app]:value:'."""
    what = what.replace("[", "(").replace("]", ")").replace("'", "")
    value = ":value:" if takes_value else ""
    if len(fl) == 1:
        return shlex.quote("%s[%s]%s" % (fl[0], what, value))
    return "'(%s)'{%s}%s" % (" ".join(fl), ",".join(fl), shlex.quote("[%s]%s" % (what, value)))


ZSH = r"""#compdef tinyserv
# tinyserv completion for zsh: eval "$(tinyserv completion zsh)" (after compinit)
_tinyserv() {
    local -a names
    names=(@NAMES@)
    if (( CURRENT == 2 )); then
        _describe 'tinyserv command' names
        return
    fi
    local command="$words[2]"
    shift words
    (( CURRENT-- ))
    case "$command" in
@CASES@
    esac
}
compdef _tinyserv tinyserv
"""
