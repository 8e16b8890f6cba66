#include "json.hpp"

#include <cstdlib>
#include <stdexcept>

namespace avssm {
namespace infer {

Json const& Json::operator[](std::string const& key) const {
    static Json const kNull;
    if (type != Type::kObject) return kNull;
    auto const found = object.find(key);
    return found == object.end() ? kNull : found->second;
}

namespace {

struct Parser {
    std::string const& text;
    size_t pos{0};

    [[noreturn]] void fail(std::string const& what) const {
        throw std::runtime_error("offset " + std::to_string(pos) + ": " + what);
    }
    void skipSpace() {
        while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n' || text[pos] == '\r')) ++pos;
    }
    bool consume(char c) {
        skipSpace();
        if (pos < text.size() && text[pos] == c) {
            ++pos;
            return true;
        }
        return false;
    }
    void expect(char c) {
        if (!consume(c)) fail(std::string("expected '") + c + "'");
    }
    void literal(char const* word) {
        for (char const* w = word; *w; ++w, ++pos) {
            if (pos >= text.size() || text[pos] != *w) fail(std::string("expected ") + word);
        }
    }
    static void appendUtf8(std::string& out, unsigned code) {
        if (code < 0x80) {
            out += static_cast<char>(code);
        } else if (code < 0x800) {
            out += static_cast<char>(0xc0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3f));
        } else if (code < 0x10000) {
            out += static_cast<char>(0xe0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (code & 0x3f));
        } else {
            out += static_cast<char>(0xf0 | (code >> 18));
            out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (code & 0x3f));
        }
    }
    unsigned hex4() {
        if (pos + 4 > text.size()) fail("short \\u escape");
        unsigned value = 0;
        for (int i = 0; i < 4; ++i) {
            char const c = text[pos++];
            value <<= 4;
            if (c >= '0' && c <= '9') value |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') value |= static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') value |= static_cast<unsigned>(c - 'A' + 10);
            else fail("bad \\u escape");
        }
        return value;
    }
    std::string str() {
        expect('"');
        std::string out;
        while (true) {
            if (pos >= text.size()) fail("unterminated string");
            char const c = text[pos++];
            if (c == '"') return out;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos >= text.size()) fail("unterminated string");
            char const e = text[pos++];
            switch (e) {
                case '"': case '\\': case '/': out += e; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned code = hex4();
                    if (code >= 0xd800 && code < 0xdc00 && pos + 6 <= text.size() && text[pos] == '\\' && text[pos + 1] == 'u') {
                        pos += 2;
                        unsigned const low = hex4();
                        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                    }
                    appendUtf8(out, code);
                    break;
                }
                default: fail("bad escape");
            }
        }
    }
    Json value(int depth) {
        if (depth > 64) fail("nested too deeply");
        skipSpace();
        if (pos >= text.size()) fail("unexpected end");
        Json v;
        char const c = text[pos];
        if (c == '{') {
            ++pos;
            v.type = Json::Type::kObject;
            if (consume('}')) return v;
            do {
                skipSpace();
                std::string key = str();
                expect(':');
                v.object[key] = value(depth + 1);
            } while (consume(','));
            expect('}');
        } else if (c == '[') {
            ++pos;
            v.type = Json::Type::kArray;
            if (consume(']')) return v;
            do {
                v.array.push_back(value(depth + 1));
            } while (consume(','));
            expect(']');
        } else if (c == '"') {
            v.type = Json::Type::kString;
            v.string = str();
        } else if (c == 't') {
            literal("true");
            v.type = Json::Type::kBool;
            v.boolean = true;
        } else if (c == 'f') {
            literal("false");
            v.type = Json::Type::kBool;
        } else if (c == 'n') {
            literal("null");
        } else {
            char const* start = text.c_str() + pos;
            char* end = nullptr;
            v.number = std::strtod(start, &end);
            if (end == start) fail("unexpected character");
            v.type = Json::Type::kNumber;
            pos += static_cast<size_t>(end - start);
        }
        return v;
    }
};

}  // namespace

Json parseJson(std::string const& text) {
    Parser parser{text};
    Json v = parser.value(0);
    parser.skipSpace();
    if (parser.pos != text.size()) parser.fail("text after the value");
    return v;
}

}  // namespace infer
}  // namespace avssm
